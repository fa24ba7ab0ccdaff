//! The cluster at a size (SPEC §6), with real node processes on one real `redis-server`, a
//! real testsrc and a recording consumer, all on 127.0.0.1:
//! - 9 streams over 3 nodes; the busiest node is SIGKILLed: every one of its streams resumes
//!   on a survivor within lease TTL + 2 s at the consumer;
//! - 30 streams created through one node end spread over 3 nodes within ±20 % of even;
//! - 100 streams appear in Redis at once and two nodes race to claim them: no stream ever
//!   has two owners, in Redis or at the consumer.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use common::cluster::{
    chunks_of, eventually, owner_of, p50_max, post_extended, start_node, PREFIX,
};
use common::redis::RedisServer;
use common::testsrc::start_testsrc;
use common::ws_sink::WsSink;
use serde_json::json;

/// Owner of every stream, as one node reports the cluster (`GET /v1/streams`).
fn owners(node: &common::node::Node) -> BTreeMap<String, String> {
    let r = node.call("GET", "/v1/streams", b"", None);
    let v: serde_json::Value = serde_json::from_slice(&r.body).expect("list json");
    v.as_array()
        .map(|a| {
            a.iter()
                .map(|s| {
                    (
                        s["spec"]["stmId"].as_str().unwrap_or_default().to_owned(),
                        s["owner"].as_str().unwrap_or_default().to_owned(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

fn loads(owners: &BTreeMap<String, String>) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    for o in owners.values() {
        *out.entry(o.clone()).or_insert(0) += 1;
    }
    out
}

#[test]
fn nine_streams_over_three_nodes_survive_a_node_sigkill() {
    let redis = RedisServer::start();
    let sink = WsSink::start();
    let (_src, src) = start_testsrc(&[]);
    let mut nodes: Vec<_> = ["node-a", "node-b", "node-c"]
        .iter()
        .map(|id| start_node(id, &redis.url()))
        .collect();
    let ids: Vec<String> = (1..=9).map(|i| format!("k{i}")).collect();
    for (i, id) in ids.iter().enumerate() {
        post_extended(&nodes[i % 3], id, &src, &sink);
    }
    for id in &ids {
        nodes[0].wait_state(id, "live", Duration::from_secs(20));
    }
    std::thread::sleep(Duration::from_secs(2));
    let before = owners(&nodes[0]);
    let per_node = loads(&before);
    eprintln!("9 streams over 3 nodes: {per_node:?}");
    assert_eq!(per_node.len(), 3, "every node runs some: {per_node:?}");
    let (victim_id, _) = per_node
        .iter()
        .max_by_key(|(_, n)| **n)
        .map(|(k, v)| (k.clone(), *v))
        .expect("a busiest node");
    let victim = ["node-a", "node-b", "node-c"]
        .iter()
        .position(|n| *n == victim_id)
        .expect("known node");
    let survivor = (victim + 1) % 3;
    let moved: Vec<&String> = before
        .iter()
        .filter(|(_, o)| **o == victim_id)
        .map(|(id, _)| id)
        .collect();

    nodes[victim].guard.kill();
    for id in &moved {
        eventually(&format!("{id} taken over"), Duration::from_secs(15), || {
            let v = nodes[survivor].get(id);
            v["owner"] != victim_id.as_str() && v["state"] == "live"
        });
    }
    std::thread::sleep(Duration::from_secs(2));
    let mut gaps = Vec::new();
    for id in &moved {
        let chunks = chunks_of(&sink, id);
        let last_old = chunks
            .iter()
            .filter(|c| c.node == victim_id)
            .map(|c| c.at)
            .max()
            .expect("delivered before the kill");
        let first_new = chunks
            .iter()
            .filter(|c| c.node != victim_id)
            .map(|c| c.at)
            .min()
            .expect("delivered after the takeover");
        gaps.push(first_new.saturating_duration_since(last_old));
    }
    let (p50, max) = p50_max(&gaps);
    eprintln!(
        "node SIGKILL: {} streams moved, consumer gap p50 {p50:.2} s, max {max:.2} s (TTL 3 s)",
        moved.len()
    );
    assert!(max <= 5.0, "gap {max:.2} s > lease TTL + 2 s");
    // The survivors' own streams were not touched.
    let after = owners(&nodes[survivor]);
    for (id, owner) in &before {
        if *owner != victim_id {
            assert_eq!(&after[id], owner, "{id} moved although its node lives");
        }
    }
    nodes.truncate(0);
}

#[test]
fn thirty_streams_created_on_one_node_spread_evenly_over_three() {
    let redis = RedisServer::start();
    let sink = WsSink::start();
    let (_src, src) = start_testsrc(&[]);
    let nodes: Vec<_> = ["node-a", "node-b", "node-c"]
        .iter()
        .map(|id| start_node(id, &redis.url()))
        .collect();
    // Every node has sent a heartbeat before the burst.
    eventually("three nodes listed", Duration::from_secs(5), || {
        let r = nodes[0].call("GET", "/v1/nodes", b"", None);
        serde_json::from_slice::<serde_json::Value>(&r.body)
            .ok()
            .and_then(|v| v.as_array().map(Vec::len))
            == Some(3)
    });
    for i in 0..30 {
        post_extended(&nodes[0], &format!("e{i:02}"), &src, &sink);
    }
    let mut per_node = BTreeMap::new();
    eventually("all 30 owned", Duration::from_secs(20), || {
        let o = owners(&nodes[0]);
        per_node = loads(&o);
        o.len() == 30 && o.values().all(|n| !n.is_empty())
    });
    eprintln!("30 streams over 3 nodes: {per_node:?}");
    assert_eq!(per_node.len(), 3, "{per_node:?}");
    for (node, n) in &per_node {
        assert!(
            (8..=12).contains(n),
            "{node} runs {n}: not within ±20 % of 10"
        );
    }
    for i in 0..30 {
        let id = format!("e{i:02}");
        nodes[0].wait_state(&id, "live", Duration::from_secs(20));
    }
}

#[test]
fn two_nodes_racing_for_100_new_streams_never_both_own_one() {
    let redis = RedisServer::start();
    let sink = WsSink::start();
    let (_src, src) = start_testsrc(&[]);
    let a = start_node("node-a", &redis.url());
    let _b = start_node("node-b", &redis.url());
    eventually("both nodes listed", Duration::from_secs(5), || {
        owners(&a).is_empty()
            && serde_json::from_slice::<serde_json::Value>(
                &a.call("GET", "/v1/nodes", b"", None).body,
            )
            .ok()
            .and_then(|v| v.as_array().map(Vec::len))
                == Some(2)
    });
    // 100 specs land in Redis in one go (as another node or a tool would store them), and
    // one event wakes both nodes at the same moment.
    let client = redis::Client::open(redis.url()).expect("client");
    let mut con = client.get_connection().expect("redis");
    let ids: Vec<String> = (0..100).map(|i| format!("race{i:03}")).collect();
    let mut pipe = redis::pipe();
    for id in &ids {
        let spec = json!({
            "stmId": id,
            "whepUrl": format!("{src}/whep/{id}"),
            "wsUrl": sink.url("/c/{stmId}"),
            "output": {"envelope": "extended"},
        });
        pipe.hset(format!("{PREFIX}:streams"), id, spec.to_string())
            .ignore();
    }
    pipe.publish(format!("{PREFIX}:events"), "put race")
        .ignore();
    let _: () = pipe.query(&mut con).expect("store specs");
    let stored = Instant::now();

    let mut held = BTreeMap::new();
    eventually("all 100 owned", Duration::from_secs(30), || {
        held = owners(&a);
        held.len() == 100 && held.values().all(|o| !o.is_empty())
    });
    eprintln!(
        "100 streams claimed in {:.1} s: {:?}",
        stored.elapsed().as_secs_f64(),
        loads(&held)
    );
    // From Redis: one lease per stream, epoch 1 (acquired once, never taken twice).
    for id in &ids {
        let (node, epoch): (Option<String>, Option<u64>) = redis::cmd("HMGET")
            .arg(format!("{PREFIX}:lease:{id}"))
            .arg("node")
            .arg("epoch")
            .query(&mut con)
            .expect("lease");
        assert_eq!(node.as_deref(), Some(held[id].as_str()), "{id}");
        assert_eq!(epoch, Some(1), "{id} acquired more than once");
    }
    // Each node runs exactly the streams Redis says it owns.
    let mut local_a = 0;
    for id in &ids {
        if owner_of(&a, id) == "node-a" {
            local_a += 1;
        }
    }
    assert_eq!(local_a, loads(&held).get("node-a").copied().unwrap_or(0));
    // At the consumer: every stream's audio comes from one node only.
    eventually("audio from all 100", Duration::from_secs(30), || {
        ids.iter().all(|id| !chunks_of(&sink, id).is_empty())
    });
    std::thread::sleep(Duration::from_secs(2));
    for id in &ids {
        let senders: BTreeSet<String> = chunks_of(&sink, id).into_iter().map(|c| c.node).collect();
        assert_eq!(senders.len(), 1, "{id} delivered by {senders:?}");
    }
}
