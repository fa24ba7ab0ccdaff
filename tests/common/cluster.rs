//! Helpers for cluster tests: real `serve` processes on one real `redis-server`, streams
//! with the `extended` envelope (each chunk names its `node`, `epoch` and `seq`), and what
//! the consumer received, per stream.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::node::Node;
use super::ws_sink::WsSink;

/// Key prefix the cluster tests use.
pub const PREFIX: &str = "cluster-test";

/// A node `id` coordinated through the Redis at `redis_url`.
pub fn start_node(id: &str, redis_url: &str) -> Node {
    Node::start_as(
        id,
        None,
        &[
            ("WHEP_BRIDGE_REDIS_URL", redis_url),
            ("WHEP_BRIDGE_REDIS_PREFIX", PREFIX),
        ],
    )
}

/// Creates stream `id` through `node`: the testsrc stream of the same name, sent to the sink
/// with the `extended` envelope.
pub fn post_extended(node: &Node, id: &str, src: &str, sink: &WsSink) {
    let body = json!({
        "stmId": id,
        "whepUrl": format!("{src}/whep/{id}"),
        "wsUrl": sink.url("/c/{stmId}"),
        "output": {"envelope": "extended"},
    });
    let r = node.json("POST", "/v1/streams", &body);
    assert_eq!(r.status, 201, "{}", r.body_text());
}

/// One chunk as the consumer got it.
#[derive(Debug, Clone)]
pub struct Chunk {
    pub at: Instant,
    pub seq: u64,
    pub epoch: u64,
    pub node: String,
}

/// Every `extended` chunk of stream `id` the sink received, in arrival order.
pub fn chunks_of(sink: &WsSink, id: &str) -> Vec<Chunk> {
    sink.messages()
        .iter()
        .filter_map(|m| {
            let v: Value = serde_json::from_str(m.text()?).ok()?;
            (v["stmId"] == id).then(|| Chunk {
                at: m.at,
                seq: v["seq"].as_u64().unwrap_or(u64::MAX),
                epoch: v["epoch"].as_u64().unwrap_or(0),
                node: v["node"].as_str().unwrap_or_default().to_owned(),
            })
        })
        .collect()
}

/// The owner node of `id` as `node` reports it.
pub fn owner_of(node: &Node, id: &str) -> String {
    node.get(id)["owner"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

/// The audio gap of `id` at the consumer across a hand-over at `at`: from the last chunk on a
/// connection opened before `at` (the old owner) to the first chunk on one opened after it
/// (the new owner). `None` until both exist.
pub fn handover_gap(sink: &WsSink, id: &str, at: Instant) -> Option<Duration> {
    let conns = sink.connections();
    let msgs = sink.messages();
    let needle = format!("\"stmId\":\"{id}\"");
    let opened_after = |c: usize| conns.get(c).is_some_and(|c| c.opened > at);
    let chunks = || {
        msgs.iter()
            .filter(|m| m.text().is_some_and(|t| t.contains(&needle)))
    };
    let last_old = chunks()
        .filter(|m| !opened_after(m.conn))
        .map(|m| m.at)
        .max()?;
    let first_new = chunks()
        .filter(|m| opened_after(m.conn))
        .map(|m| m.at)
        .min()?;
    Some(first_new.saturating_duration_since(last_old))
}

/// Polls until `f` holds (bounded).
pub fn eventually(what: &str, within: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !f() {
        assert!(Instant::now() < deadline, "not within {within:?}: {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// p50 and max of some durations, in seconds (for the printed figures).
pub fn p50_max(gaps: &[Duration]) -> (f64, f64) {
    let mut s: Vec<f64> = gaps.iter().map(Duration::as_secs_f64).collect();
    s.sort_by(f64::total_cmp);
    let p50 = s.get(s.len() / 2).copied().unwrap_or_default();
    (p50, s.last().copied().unwrap_or_default())
}
