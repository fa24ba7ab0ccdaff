//! Takeover when local retries cannot fix a stream (SPEC §6), with real node processes on a
//! real `redis-server`, all on 127.0.0.1. Nodes name themselves in their `User-Agent`, so
//! the consumer (and the media source) can be made dead for one node only:
//! - the consumer refuses one node: after `redis.handover_after_secs` that node hands the
//!   stream over (release + cooldown) and another node delivers it;
//! - the media source drops and refuses one node (testsrc `/control/block`): the same;
//! - the consumer refuses every node: the stream moves once, then stays on its owner
//!   (everyone else is cooling down), shows `failing` with the error, and recovers in place
//!   when the consumer comes back.

mod common;

use std::time::{Duration, Instant};

use common::cluster::{chunks_of, eventually, owner_of, post_extended, PREFIX};
use common::net::http_request;
use common::node::Node;
use common::redis::RedisServer;
use common::testsrc::start_testsrc;
use common::ws_sink::WsSink;

/// Hand over after 3 s of failure (the default is 10 s).
const AFTER_SECS: &str = "3";

/// No RTP for 2 s marks a stream `stalled` (the default is 5 s): a dead source is noticed
/// sooner.
const STALL_SECS: &str = "2";

fn start_node(id: &str, redis: &RedisServer) -> Node {
    Node::start_as(
        id,
        None,
        &[
            ("WHEP_BRIDGE_REDIS_URL", &redis.url()),
            ("WHEP_BRIDGE_REDIS_PREFIX", PREFIX),
            ("WHEP_BRIDGE_REDIS_HANDOVER_AFTER_SECS", AFTER_SECS),
            ("WHEP_BRIDGE_MEDIA_STALL_SECS", STALL_SECS),
        ],
    )
}

fn other(id: &str) -> &'static str {
    if id == "node-a" {
        "node-b"
    } else {
        "node-a"
    }
}

#[test]
fn a_consumer_dead_for_one_node_moves_the_stream_to_another() {
    let redis = RedisServer::start();
    let sink = WsSink::start();
    let (_src, src) = start_testsrc(&[]);
    let a = start_node("node-a", &redis);
    let _b = start_node("node-b", &redis);
    post_extended(&a, "moved", &src, &sink);
    a.wait_state("moved", "live", Duration::from_secs(15));
    std::thread::sleep(Duration::from_secs(1));
    let first = owner_of(&a, "moved");
    let second = other(&first);

    sink.block_agent(&format!("(node {first})"));
    let blocked = Instant::now();
    let mut v = serde_json::Value::Null;
    eventually("the stream moves", Duration::from_secs(15), || {
        v = a.get("moved");
        v["owner"] == second && v["state"] == "live"
    });
    let chunks = chunks_of(&sink, "moved");
    let first_new = chunks
        .iter()
        .find(|c| c.node == second)
        .map(|c| c.at)
        .unwrap_or_else(Instant::now);
    eventually("audio from the new owner", Duration::from_secs(5), || {
        chunks_of(&sink, "moved").iter().any(|c| c.node == second)
    });
    let gap = first_new.saturating_duration_since(blocked);
    eprintln!(
        "consumer dead for {first}: delivered by {second} {:.2} s later (hand-over after {AFTER_SECS} s)",
        gap.as_secs_f64()
    );
    assert!(gap <= Duration::from_secs(3 + 3), "gap {gap:?}");
    // The old owner is cooling down: the stream stays where it is.
    let epoch = v["epoch"].clone();
    std::thread::sleep(Duration::from_secs(4));
    let later = a.get("moved");
    assert_eq!(later["owner"], second, "{later}");
    assert_eq!(later["epoch"], epoch, "{later}");
    // Never two nodes at once: every chunk of the old owner arrived before the new one's.
    let chunks = chunks_of(&sink, "moved");
    let last_old = chunks
        .iter()
        .filter(|c| c.node == first)
        .map(|c| c.at)
        .max();
    let first_new = chunks
        .iter()
        .filter(|c| c.node == second)
        .map(|c| c.at)
        .min();
    assert!(last_old < first_new, "overlap");
}

#[test]
fn a_whep_source_dead_for_one_node_moves_the_stream_to_another() {
    let redis = RedisServer::start();
    let sink = WsSink::start();
    let (_src, src) = start_testsrc(&[]);
    let a = start_node("node-a", &redis);
    let _b = start_node("node-b", &redis);
    post_extended(&a, "wmoved", &src, &sink);
    a.wait_state("wmoved", "live", Duration::from_secs(15));
    std::thread::sleep(Duration::from_secs(1));
    let first = owner_of(&a, "wmoved");
    let second = other(&first);

    // The source drops the owner's session and refuses it from now on (its User-Agent names
    // the node); the other node still gets in.
    let r = http_request(
        "POST",
        &format!("{src}/control/block?agent=node%20{first})"),
        b"",
        None,
        Duration::from_secs(5),
    )
    .expect("control request");
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let blocked = Instant::now();
    let mut v = serde_json::Value::Null;
    eventually("the stream moves", Duration::from_secs(15), || {
        v = a.get("wmoved");
        v["owner"] == second && v["state"] == "live"
    });
    eventually("audio from the new owner", Duration::from_secs(5), || {
        chunks_of(&sink, "wmoved").iter().any(|c| c.node == second)
    });
    let chunks = chunks_of(&sink, "wmoved");
    let first_new = chunks
        .iter()
        .filter(|c| c.node == second)
        .map(|c| c.at)
        .min()
        .unwrap_or_else(Instant::now);
    let last_old = chunks
        .iter()
        .filter(|c| c.node == first)
        .map(|c| c.at)
        .max();
    assert!(last_old < Some(first_new), "overlap");
    let gap = first_new.saturating_duration_since(blocked);
    eprintln!(
        "WHEP source dead for {first}: delivered by {second} {:.2} s later \
         (stalled after {STALL_SECS} s, hand-over after {AFTER_SECS} s more)",
        gap.as_secs_f64()
    );
    // Noticed when RTP stops (stall), then local retries get `handover_after` to fix it;
    // each is checked once a second, then the new owner connects and fills a chunk.
    assert!(gap <= Duration::from_secs(2 + 3 + 3), "gap {gap:?}");
}

#[test]
fn a_stream_failing_everywhere_settles_as_failing_and_recovers_in_place() {
    let redis = RedisServer::start();
    let sink = WsSink::start();
    let (_src, src) = start_testsrc(&[]);
    let a = start_node("node-a", &redis);
    let _b = start_node("node-b", &redis);
    post_extended(&a, "doomed", &src, &sink);
    a.wait_state("doomed", "live", Duration::from_secs(15));
    let start_epoch = a.get("doomed")["epoch"].as_u64().unwrap_or(0);

    sink.block_agent("whep-bridge");
    // It moves once (after 3 s), then the new owner keeps it: the old one is cooling down.
    let mut v = serde_json::Value::Null;
    eventually("failing, with the error", Duration::from_secs(20), || {
        v = a.get("doomed");
        v["state"] == "failing" && v["epoch"].as_u64() == Some(start_epoch + 1)
    });
    let last_error = v["lastError"].as_str().unwrap_or_default();
    assert!(last_error.contains("503"), "{v}");
    let settled_on = v["owner"].clone();
    std::thread::sleep(Duration::from_secs(5));
    let later = a.get("doomed");
    assert_eq!(later["owner"], settled_on, "bounced: {later}");
    assert_eq!(
        later["epoch"].as_u64(),
        Some(start_epoch + 1),
        "bounced: {later}"
    );

    // The consumer comes back: the owner's own retries (capped backoff) recover it.
    sink.unblock_agents();
    eventually("live again", Duration::from_secs(40), || {
        let v = a.get("doomed");
        v["state"] == "live" && v["stats"]["consumerConnected"] == true
    });
    assert_eq!(a.get("doomed")["owner"], settled_on);
}
