//! 20 streams on one `whep-bridge serve` node for 20 s (issue 3): all live, every stream's
//! audio correct — its own tones, real-time pace, phase-continuous — and spread over the
//! node's arbiters (one per core).

mod common;

use std::time::Duration;

use common::audio::decode_seed_by_stream;
use common::continuity::{continuity_report_with, ContinuityConfig};
use common::net::{http_get, http_request};
use common::node::Node;
use common::spectrum::dominant_frequencies;
use common::testsrc::start_testsrc;
use common::ws_sink::WsSink;
use serde_json::Value;

const STREAMS: usize = 20;
const T: Duration = Duration::from_secs(10);

fn tones(i: usize) -> [f64; 2] {
    [300.0 + 37.0 * i as f64, 1_000.0 + 53.0 * i as f64]
}

#[test]
fn twenty_streams_for_twenty_seconds_all_live_all_correct() {
    let sink = WsSink::start();
    let (_src, src) = start_testsrc(&[]);
    let mut node = Node::start(None);
    let base = node.base.clone();

    for i in 0..STREAMS {
        let [l, r] = tones(i);
        let body = serde_json::json!({
            "stmId": format!("s{i:02}"),
            "whepUrl": format!("{src}/whep/s{i:02}?freq={l}&freq_r={r}"),
            "wsUrl": sink.url("/many/{stmId}"),
        });
        let resp = http_request(
            "POST",
            &format!("{base}/v1/streams"),
            body.to_string().as_bytes(),
            Some("application/json"),
            T,
        )
        .expect("POST");
        assert_eq!(resp.status, 201, "{}", resp.body_text());
    }

    // All live within 20 s, spread over the arbiters.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let list: Value = serde_json::from_slice(
            &http_get(&format!("{base}/v1/streams"), T)
                .expect("list")
                .body,
        )
        .expect("json");
        let live = list
            .as_array()
            .map_or(0, |a| a.iter().filter(|s| s["state"] == "live").count());
        if live == STREAMS {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{live}/{STREAMS} live\n{}",
            node.guard.log_tail()
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    let nodes: Value = serde_json::from_slice(
        &http_get(&format!("{base}/v1/nodes"), T)
            .expect("nodes")
            .body,
    )
    .expect("json");
    let loads: Vec<u64> = nodes[0]["arbiterLoads"]
        .as_array()
        .expect("loads")
        .iter()
        .filter_map(Value::as_u64)
        .collect();
    assert_eq!(loads.iter().sum::<u64>(), STREAMS as u64, "{nodes}");
    let (min, max) = (loads.iter().min(), loads.iter().max());
    assert!(
        max.zip(min).is_some_and(|(a, b)| a - b <= 1),
        "unbalanced {loads:?}"
    );

    std::thread::sleep(Duration::from_secs(20));
    node.stop(Duration::from_secs(20));

    let msgs = sink.messages();
    let by_stream = decode_seed_by_stream(&msgs);
    assert_eq!(by_stream.len(), STREAMS);
    for i in 0..STREAMS {
        let id = format!("s{i:02}");
        let (samples, metas) = &by_stream[&id];
        let full: Vec<_> = metas.iter().filter(|m| m.samples == 3_200).collect();
        assert!(full.len() >= 95, "{id}: {} full chunks", full.len());
        let wall = full[full.len() - 1]
            .at
            .duration_since(full[0].at)
            .as_secs_f64();
        let ratio = (full.len() - 1) as f64 * 0.2 / wall;
        assert!((0.97..=1.03).contains(&ratio), "{id}: pace {ratio:.4}");
        let want = tones(i);
        let f = dominant_frequencies(&samples[16_000..], 16_000, 2);
        assert!(
            f.len() == 2 && (f[0] - want[0]).abs() <= 2.0 && (f[1] - want[1]).abs() <= 2.0,
            "{id}: tones {f:?}, want {want:?}"
        );
        let report =
            continuity_report_with(samples, 16_000, &want, &ContinuityConfig::after_warmup());
        assert!(report.is_continuous(), "{id}: {report}");
    }
}
