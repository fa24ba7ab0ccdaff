//! `wsMode: shared` (SPEC §4.2) on a real node: the streams that name the same consumer URL
//! share one WebSocket connection, each keeps its own `seq` and audio, a consumer outage
//! replays every stream's chunks exactly once, and a stream that leaves does not disturb the
//! others. Real `serve` and `testsrc` processes, a recording sink, all on 127.0.0.1.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use base64::Engine;
use common::audio::s16le_to_i16;
use common::continuity::{continuity_report_with, ContinuityConfig};
use common::node::{assert_problem, Node};
use common::spectrum::dominant_frequencies;
use common::testsrc::start_testsrc;
use common::ws_sink::{WsMessage, WsSink};
use serde_json::{json, Value};

const IDS: [&str; 3] = ["sh0", "sh1", "sh2"];
const OUTAGE: Duration = Duration::from_secs(5);

fn tones(i: usize) -> [f64; 2] {
    [350.0 + 90.0 * i as f64, 1_100.0 + 70.0 * i as f64]
}

fn spec(i: usize, src: &str, sink: &WsSink, envelope: &str) -> Value {
    let [l, r] = tones(i);
    json!({
        "stmId": IDS[i],
        "whepUrl": format!("{src}/whep/{}?freq={l}&freq_r={r}", IDS[i]),
        "wsUrl": sink.url("/shared"),
        "wsHeaders": {"Authorization": "Bearer shared-secret"},
        "output": {"envelope": envelope, "wsMode": "shared"},
    })
}

/// One stream's chunks as the consumer got them: seq → (connection, PCM).
type Chunks = BTreeMap<u64, (usize, Vec<i16>)>;

/// Splits the extended chunks by stream; a `seq` arriving twice is a failure.
fn chunks_by_stream(msgs: &[WsMessage]) -> BTreeMap<String, Chunks> {
    let mut out: BTreeMap<String, Chunks> = BTreeMap::new();
    for m in msgs {
        let Some(text) = m.text() else { continue };
        let v: Value = serde_json::from_str(text).expect("json");
        let id = v["stmId"].as_str().expect("stmId").to_owned();
        let seq = v["seq"].as_u64().expect("seq");
        assert_eq!(v["pts"].as_u64(), Some(seq * 200), "{id}: pts of {seq}");
        let pcm = base64::engine::general_purpose::STANDARD
            .decode(v["data"].as_str().expect("data"))
            .expect("base64");
        let old = out
            .entry(id.clone())
            .or_default()
            .insert(seq, (m.conn, s16le_to_i16(&pcm)));
        assert!(old.is_none(), "{id}: chunk {seq} arrived twice");
    }
    out
}

#[test]
fn streams_share_one_connection_and_survive_a_consumer_outage() {
    let sink = WsSink::start();
    let (_src, src) = start_testsrc(&[]);
    let mut node = Node::start(None);

    // Binary frames cannot be multiplexed: refused, naming the field, nothing started.
    let r = node.json("POST", "/v1/streams", &spec(0, &src, &sink, "binary"));
    assert_problem(&r, 400, Some("output.wsMode"));
    assert!(node.list().is_empty());

    for i in 0..IDS.len() {
        let r = node.json("POST", "/v1/streams", &spec(i, &src, &sink, "extended"));
        assert_eq!(r.status, 201, "{}", r.body_text());
        let v: Value = serde_json::from_slice(&r.body).expect("json");
        assert_eq!(v["spec"]["output"]["wsMode"], "shared", "{v}");
    }
    for id in IDS {
        node.wait_state(id, "live", Duration::from_secs(15));
    }
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(sink.connection_count(), 1, "{}", node.guard.log_tail());
    let conn = &sink.connections()[0];
    assert_eq!(conn.path, "/shared");
    assert_eq!(conn.header("authorization"), Some("Bearer shared-secret"));

    // The consumer drops the connection and refuses for 5 s: one reconnect for all streams.
    let crash = Instant::now();
    sink.refuse_for(OUTAGE);
    sink.close_all();
    // The API shows the outage: consumer down, audio held for replay.
    std::thread::sleep(Duration::from_millis(2_500));
    for id in IDS {
        let v = node.get(id);
        assert_eq!(v["stats"]["consumerConnected"], false, "{v}");
        assert!(v["stats"]["bufferedMs"].as_u64() >= Some(2_000), "{v}");
        assert_eq!(v["state"], "live", "the WHEP side is unaffected: {v}");
    }
    assert!(
        sink.wait_connections(2, Duration::from_secs(15)),
        "no reconnect\n{}",
        node.guard.log_tail()
    );
    assert!(
        sink.connections()[1].opened.duration_since(crash) >= OUTAGE - Duration::from_millis(100)
    );
    std::thread::sleep(Duration::from_secs(3));
    for id in IDS {
        let v = node.get(id);
        assert_eq!(v["state"], "live", "{v}");
        assert_eq!(v["stats"]["droppedChunks"], 0, "{v}");
        assert_eq!(v["stats"]["consumerConnected"], true, "{v}");
        assert!(
            v["stats"]["bufferedMs"].as_u64() <= Some(400),
            "replayed: {v}"
        );
    }

    // One stream leaves; the others keep the same connection.
    let r = node.call("DELETE", "/v1/streams/sh0", b"", None);
    assert_eq!(r.status, 204, "{}", r.body_text());
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(sink.connection_count(), 2);
    assert_eq!(sink.open_count(), 1, "the shared connection stays open");

    node.stop(Duration::from_secs(15));
    let msgs = sink.messages();
    // The last stream out closed the shared connection, once.
    assert_eq!(msgs.iter().filter(|m| m.is_close()).count(), 1);
    assert!(msgs.last().is_some_and(WsMessage::is_close));

    let by_stream = chunks_by_stream(&msgs);
    assert_eq!(by_stream.len(), IDS.len());
    for (i, id) in IDS.iter().enumerate() {
        let chunks = &by_stream[*id];
        let n = chunks.len() as u64;
        assert!(n >= 40, "{id}: only {n} chunks");
        assert_eq!(
            chunks.keys().copied().collect::<Vec<_>>(),
            (0..n).collect::<Vec<_>>(),
            "{id}: seq must be exactly 0..{n} over both connections"
        );
        // Its chunks came on both connections, in order.
        let conns: Vec<usize> = chunks.values().map(|(c, _)| *c).collect();
        assert!(conns.windows(2).all(|w| w[0] <= w[1]), "{id}: {conns:?}");
        assert_eq!(conns.first(), Some(&0));
        assert_eq!(conns.last(), Some(&1));
        let samples: Vec<i16> = chunks.values().flat_map(|(_, p)| p.clone()).collect();
        let want = tones(i);
        let f = dominant_frequencies(&samples[16_000..], 16_000, 2);
        assert!(
            f.len() == 2 && (f[0] - want[0]).abs() <= 2.0 && (f[1] - want[1]).abs() <= 2.0,
            "{id}: tones {f:?}, want {want:?}"
        );
        let report =
            continuity_report_with(&samples, 16_000, &want, &ContinuityConfig::after_warmup());
        assert!(
            report.is_continuous(),
            "{id}: not continuous across the outage: {report}"
        );
    }
}
