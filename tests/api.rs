//! The node's HTTP API (SPEC §5) against a real `whep-bridge serve` process, with testsrc as
//! the WHEP source and a WebSocket sink as the consumer, all on 127.0.0.1.
//!
//! Bad input must get its status and an RFC 9457 problem naming the field, and change
//! nothing: the stream list is compared before and after every bad request.

mod common;

use std::time::Duration;

use common::net::http_request_with;
use common::node::{assert_problem, Node, T};
use common::testsrc::start_testsrc;
use common::ws_sink::WsSink;
use serde_json::Value;

fn spec(id: &str, src: &str, sink: &WsSink) -> Value {
    serde_json::json!({
        "stmId": id,
        "whepUrl": format!("{src}/whep/{id}"),
        "wsUrl": sink.url("/asr/{stmId}"),
        "whepToken": "whep-secret-123",
        "wsHeaders": {"Authorization": "Bearer ws-secret-456"},
    })
}

#[test]
fn crud_cycle_runs_the_stream_and_never_shows_secrets() {
    let sink = WsSink::start();
    let (_src, src) = start_testsrc(&[]);
    let node = Node::start(None);

    let r = node.json("POST", "/v1/streams", &spec("cam1", &src, &sink));
    assert_eq!(r.status, 201, "{}", r.body_text());
    assert_eq!(r.header("location"), Some("/v1/streams/cam1"));
    let live = node.wait_state("cam1", "live", Duration::from_secs(15));
    assert_eq!(live["owner"], "node-a");
    assert_eq!(live["epoch"], 1, "the first lease of a stream has epoch 1");
    let text = live.to_string();
    assert!(
        !text.contains("whep-secret-123") && !text.contains("ws-secret-456"),
        "{text}"
    );
    assert!(sink.wait_until(Duration::from_secs(10), |m| m.len() >= 3));
    assert_eq!(sink.connections()[0].path, "/asr/cam1");
    assert_eq!(
        sink.connections()[0].header("authorization"),
        Some("Bearer ws-secret-456")
    );
    let stats = node.wait_state("cam1", "live", T)["stats"].clone();
    assert!(stats["packets"].as_u64().unwrap_or(0) > 0, "{stats}");
    assert!(stats["chunks"].as_u64().unwrap_or(0) > 0, "{stats}");
    assert_eq!(node.list(), ["cam1"]);

    // PUT replaces (200) with a new output format; PUT of a new id creates (201).
    let mut changed = spec("cam1", &src, &sink);
    changed["output"] = serde_json::json!({"chunkMs": 100});
    let r = node.json("PUT", "/v1/streams/cam1", &changed);
    assert_eq!(r.status, 200, "{}", r.body_text());
    let v: Value = serde_json::from_slice(&r.body).expect("json");
    assert_eq!(v["spec"]["output"]["chunkMs"], 100);
    assert_eq!(
        v["epoch"], 2,
        "a replaced stream is a new run with a new epoch"
    );
    let r = node.json("PUT", "/v1/streams/cam2", &spec("cam2", &src, &sink));
    assert_eq!(r.status, 201, "{}", r.body_text());
    assert_eq!(node.list(), ["cam1", "cam2"]);

    let nodes: Value =
        serde_json::from_slice(&node.call("GET", "/v1/nodes", b"", None).body).expect("nodes json");
    assert_eq!(nodes.as_array().map(Vec::len), Some(1), "{nodes}");
    assert_eq!(nodes[0]["node"], "node-a");
    assert_eq!(nodes[0]["streams"], 2);
    assert_eq!(nodes[0]["address"], node.base.trim_start_matches("http://"));

    // /metrics: Prometheus text with states, per-stream counters and the latency histogram.
    node.wait_state("cam2", "live", Duration::from_secs(15));
    std::thread::sleep(Duration::from_millis(600));
    let m = node.call("GET", "/metrics", b"", None);
    assert_eq!(m.status, 200);
    let text = m.body_text();
    let value = |series: &str| -> f64 {
        text.lines()
            .find_map(|l| l.strip_prefix(series).and_then(|v| v.trim().parse().ok()))
            .unwrap_or_else(|| panic!("no {series} in\n{text}"))
    };
    assert!(value("whep_bridge_streams{node=\"node-a\",state=\"live\"}") >= 1.0);
    assert!(value("whep_bridge_rtp_packets_total{node=\"node-a\",stm_id=\"cam2\"}") > 0.0);
    assert!(value("whep_bridge_chunks_sent_total{node=\"node-a\",stm_id=\"cam2\"}") > 0.0);
    assert!(value("whep_bridge_pipeline_latency_seconds_count{node=\"node-a\"}") > 0.0);
    for line in text
        .lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
    {
        let (_, v) = line.rsplit_once(' ').expect("sample line");
        assert!(v.parse::<f64>().is_ok(), "bad sample line {line}");
    }

    // DELETE stops it: 204, then 404, and the source session ends.
    let r = node.call("DELETE", "/v1/streams/cam1", b"", None);
    assert_eq!(r.status, 204);
    assert_problem(
        &node.call("GET", "/v1/streams/cam1", b"", None),
        404,
        Some("stmId"),
    );
    assert_problem(
        &node.call("DELETE", "/v1/streams/cam1", b"", None),
        404,
        Some("stmId"),
    );
    assert_eq!(node.list(), ["cam2"]);
}

#[test]
fn bad_input_gets_a_problem_and_changes_nothing() {
    let sink = WsSink::start();
    let (_src, src) = start_testsrc(&[]);
    let node = Node::start(None);
    let r = node.json("POST", "/v1/streams", &spec("keep", &src, &sink));
    assert_eq!(r.status, 201, "{}", r.body_text());
    let before = node.list();
    let good = spec("new1", &src, &sink);

    let with = |k: &str, v: Value| {
        let mut s = good.clone();
        s[k] = v;
        s
    };
    // (what, body, content type, expected status, field named)
    type Case<'a> = (&'a str, Vec<u8>, Option<&'a str>, u16, Option<&'a str>);
    let cases: Vec<Case> = vec![
        (
            "malformed JSON",
            b"{\"stmId\": ".to_vec(),
            Some("application/json"),
            400,
            None,
        ),
        (
            "unknown field",
            with("color", Value::from("red")).to_string().into_bytes(),
            Some("application/json"),
            400,
            Some("color"),
        ),
        (
            "bad stmId",
            with("stmId", Value::from("has space"))
                .to_string()
                .into_bytes(),
            Some("application/json"),
            400,
            Some("stmId"),
        ),
        (
            "unsupported WHEP scheme",
            with("whepUrl", Value::from("rtmp://h/live/x"))
                .to_string()
                .into_bytes(),
            Some("application/json"),
            400,
            Some("whepUrl"),
        ),
        (
            "unsupported WS scheme",
            with("wsUrl", Value::from("http://h/x"))
                .to_string()
                .into_bytes(),
            Some("application/json"),
            400,
            Some("wsUrl"),
        ),
        (
            "bad sample rate",
            with("output", serde_json::json!({"sampleRate": 11025}))
                .to_string()
                .into_bytes(),
            Some("application/json"),
            400,
            Some("output.sampleRate"),
        ),
        (
            "duplicate create",
            spec("keep", &src, &sink).to_string().into_bytes(),
            Some("application/json"),
            409,
            Some("stmId"),
        ),
        (
            "body over 64 KiB",
            with("traceId", Value::from("x".repeat(70_000)))
                .to_string()
                .into_bytes(),
            Some("application/json"),
            413,
            None,
        ),
        (
            "not JSON content type",
            good.to_string().into_bytes(),
            Some("text/plain"),
            415,
            None,
        ),
    ];
    for (what, body, ctype, status, field) in cases {
        let r = node.call("POST", "/v1/streams", &body, ctype);
        assert_problem(&r, status, field);
        assert_eq!(node.list(), before, "{what} changed the stream list");
    }
    // PUT with a body id that disagrees with the path.
    let r = node.json("PUT", "/v1/streams/other", &good);
    assert_problem(&r, 400, Some("stmId"));
    assert_problem(
        &node.call("GET", "/v1/streams/nope", b"", None),
        404,
        Some("stmId"),
    );
    assert_eq!(node.list(), before);
    // The surviving stream is untouched and still runs.
    node.wait_state("keep", "live", Duration::from_secs(15));
}

#[test]
fn api_token_is_required_when_configured() {
    let node = Node::start(Some("api-token-789"));
    let url = format!("{}/v1/streams", node.base);
    for headers in [vec![], vec![("Authorization", "Bearer wrong")]] {
        let r = http_request_with("GET", &url, b"", &headers, T).expect("request");
        assert_problem(&r, 401, None);
        assert_eq!(r.header("www-authenticate"), Some("Bearer"));
    }
    // Writes are refused too, before the body is even looked at.
    let body =
        br#"{"stmId":"x","whepUrl":"http://127.0.0.1:9/whep/x","wsUrl":"ws://127.0.0.1:9/"}"#;
    let r = http_request_with(
        "POST",
        &url,
        body,
        &[("Content-Type", "application/json")],
        T,
    )
    .expect("request");
    assert_problem(&r, 401, None);
    assert!(node.list().is_empty());
    // Health endpoints stay open for probes.
    let r =
        http_request_with("GET", &format!("{}/healthz", node.base), b"", &[], T).expect("healthz");
    assert_eq!(r.status, 200);
    assert!(!node.guard.output().contains("api-token-789"));
}

#[test]
fn sigterm_drains_the_streams() {
    let sink = WsSink::start();
    let (_src, src) = start_testsrc(&[]);
    let mut node = Node::start(None);
    for id in ["d1", "d2", "d3"] {
        let r = node.json("POST", "/v1/streams", &spec(id, &src, &sink));
        assert_eq!(r.status, 201, "{}", r.body_text());
    }
    for id in ["d1", "d2", "d3"] {
        node.wait_state(id, "live", Duration::from_secs(15));
    }
    node.stop(Duration::from_secs(15));
    // Every consumer connection got a close frame (clean WS close).
    let closes = sink.messages().iter().filter(|m| m.is_close()).count();
    assert_eq!(closes, 3, "{}", node.guard.log_tail());
    // And every WHEP session was deleted at the source.
    let stats: Value = serde_json::from_slice(
        &common::net::http_get(&format!("{src}/stats"), T)
            .expect("stats")
            .body,
    )
    .expect("stats json");
    assert_eq!(
        stats["sessions"].as_array().map(Vec::len),
        Some(0),
        "{stats}"
    );
}

#[test]
fn log_format_from_the_config_is_applied() {
    let node = Node::start_with(None, &[("WHEP_BRIDGE_NODE_LOG_FORMAT", "json")]);
    let _ = node.list();
    let err = node.guard.stderr();
    let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
    assert!(!lines.is_empty(), "no log output");
    for line in lines {
        let v: Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("not a JSON log line ({e}): {line}"));
        assert!(v["level"].is_string() && v["fields"].is_object(), "{line}");
    }
}
