//! Two nodes on one real `redis-server` (SPEC §6), all on 127.0.0.1: streams created on
//! either node are stored in Redis and run under a lease; `GET /v1/nodes` lists both; a
//! `DELETE` sent to the node that does not run a stream stops it on its owner; and when an
//! owner is SIGKILLed, the survivor takes its stream over after the lease expires, with a
//! higher epoch, and the audio resumes at the consumer.

mod common;

use std::time::{Duration, Instant};

use common::cluster::{self, eventually, handover_gap};
use common::node::Node;
use common::redis::RedisServer;
use common::testsrc::start_testsrc;
use common::ws_sink::WsSink;
use serde_json::{json, Value};

fn start_node(id: &str, redis: &RedisServer) -> Node {
    cluster::start_node(id, &redis.url())
}

fn post(node: &Node, id: &str, src: &str, sink: &WsSink) {
    let body = json!({"stmId": id, "whepUrl": format!("{src}/whep/{id}"), "wsUrl": sink.url("/c/{stmId}")});
    let r = node.json("POST", "/v1/streams", &body);
    assert_eq!(r.status, 201, "{}", r.body_text());
}

/// 0 when a stream's status says node-a owns it, 1 for node-b.
fn a_or_b(status: &Value) -> usize {
    usize::from(status["owner"] == "node-b")
}

#[test]
fn streams_run_under_leases_and_move_to_the_survivor_when_their_node_dies() {
    let redis = RedisServer::start();
    let sink = WsSink::start();
    let (_src, src) = start_testsrc(&[]);
    let a = start_node("node-a", &redis);
    let b = start_node("node-b", &redis);

    post(&a, "on-a", &src, &sink);
    post(&b, "on-b", &src, &sink);
    post(&a, "doomed", &src, &sink);
    // Placement is the cluster's (least-loaded node); any node answers for any stream.
    for id in ["on-a", "on-b", "doomed"] {
        let v = a.wait_state(id, "live", Duration::from_secs(15));
        assert_eq!(v["epoch"], 1, "{v}");
        assert_eq!(
            b.get(id)["owner"],
            v["owner"],
            "both nodes agree on the owner"
        );
    }
    // Creating an existing stream through the other node conflicts: the spec is shared.
    let dup = json!({"stmId": "on-a", "whepUrl": format!("{src}/whep/x"), "wsUrl": sink.url("/c")});
    assert_eq!(b.json("POST", "/v1/streams", &dup).status, 409);

    eventually("both nodes listed", Duration::from_secs(5), || {
        let r = a.call("GET", "/v1/nodes", b"", None);
        let v: Value = serde_json::from_slice(&r.body).unwrap_or(Value::Null);
        let ids: Vec<&str> = v
            .as_array()
            .map(|n| n.iter().filter_map(|x| x["node"].as_str()).collect())
            .unwrap_or_default();
        ids == ["node-a", "node-b"]
    });
    let list = a.list();
    assert_eq!(list.len(), 3, "the cluster-wide list: {list:?}");

    // DELETE through the node that does not run it: the owner stops it within ~1 s.
    let mut nodes = [a, b];
    let owner_ix = |nodes: &[Node], id: &str| a_or_b(&nodes[0].get(id));
    let o = owner_ix(&nodes, "doomed");
    let asked = Instant::now();
    assert_eq!(
        nodes[1 - o]
            .call("DELETE", "/v1/streams/doomed", b"", None)
            .status,
        204
    );
    eventually(
        "owner stopped the deleted stream",
        Duration::from_secs(3),
        || nodes[o].guard.output().contains("stream stopped: deleted"),
    );
    let took = asked.elapsed();
    eprintln!("DELETE through the other node: the owner stopped it after {took:?}");
    assert!(took < Duration::from_secs(1), "stopped after {took:?}");
    assert_eq!(
        nodes[o].call("GET", "/v1/streams/doomed", b"", None).status,
        404
    );

    // The owner of "on-a" dies without a word; the survivor takes the stream over.
    std::thread::sleep(Duration::from_secs(1));
    let victim = owner_ix(&nodes, "on-a");
    let survivor = 1 - victim;
    let survivor_id = format!("node-{}", ["a", "b"][survivor]);
    let undisturbed: Vec<(String, Value)> = nodes[survivor]
        .list()
        .into_iter()
        .map(|id| {
            let v = nodes[survivor].get(&id);
            (id, v)
        })
        .filter(|(_, v)| v["owner"] == survivor_id.as_str())
        .map(|(id, v)| (id, v["epoch"].clone()))
        .collect();
    nodes[victim].guard.kill();
    let killed = Instant::now();
    let mut v = Value::Null;
    eventually("the survivor runs on-a", Duration::from_secs(15), || {
        v = nodes[survivor].get("on-a");
        v["owner"] == survivor_id.as_str() && v["state"] == "live"
    });
    assert!(
        v["epoch"].as_u64() >= Some(2),
        "a takeover is a new epoch: {v}"
    );
    // The audio resumes at the consumer, on the survivor's connection.
    let mut gap = None;
    eventually(
        "audio of on-a after the takeover",
        Duration::from_secs(10),
        || {
            gap = handover_gap(&sink, "on-a", killed);
            gap.is_some()
        },
    );
    let gap = gap.unwrap_or_default();
    eprintln!(
        "node SIGKILL: audio gap at the consumer {:.2} s (lease TTL 3 s)",
        gap.as_secs_f64()
    );
    assert!(
        gap <= Duration::from_secs(5),
        "gap {gap:?} > lease TTL + 2 s"
    );
    // The survivor's own streams were never disturbed.
    for (id, epoch) in undisturbed {
        let now = nodes[survivor].get(&id);
        assert_eq!(now["state"], "live", "{now}");
        assert_eq!(now["epoch"], epoch, "{now}");
    }
}

#[test]
fn sigterm_drains_and_the_other_node_takes_the_stream_over() {
    let redis = RedisServer::start();
    let sink = WsSink::start();
    let (_src, src) = start_testsrc(&[]);
    let a = start_node("node-a", &redis);
    let b = start_node("node-b", &redis);
    post(&a, "handed", &src, &sink);
    a.wait_state("handed", "live", Duration::from_secs(15));
    std::thread::sleep(Duration::from_secs(2));

    let mut nodes = [a, b];
    let owner = a_or_b(&nodes[0].get("handed"));
    let (leaving, staying) = (owner, 1 - owner);
    let staying_id = ["node-a", "node-b"][staying];

    let asked = Instant::now();
    nodes[leaving].stop(Duration::from_secs(15));
    let mut v = Value::Null;
    eventually("the other node runs it", Duration::from_secs(10), || {
        v = nodes[staying].get("handed");
        v["owner"] == staying_id && v["state"] == "live"
    });
    assert_eq!(v["epoch"], 2, "{v}");

    // node-a closed its consumer connection cleanly; node-b opened a new one.
    let mut gap = None;
    eventually("audio from node-b", Duration::from_secs(10), || {
        gap = handover_gap(&sink, "handed", asked);
        gap.is_some()
    });
    assert!(
        sink.messages().iter().any(|m| m.is_close()),
        "no clean close from the node that left"
    );
    let gap = gap.unwrap_or_default();
    eprintln!(
        "SIGTERM hand-over: audio gap at the consumer {:.2} s",
        gap.as_secs_f64()
    );
    assert!(
        gap <= Duration::from_secs(1),
        "SIGTERM hand-over gap {gap:?} > 1 s"
    );
}

#[test]
fn two_nodes_with_one_id_are_reported() {
    let redis = RedisServer::start();
    let a = start_node("twin", &redis);
    let b = start_node("twin", &redis);
    eventually("the clash is logged", Duration::from_secs(6), || {
        [&a, &b].iter().any(|n| {
            n.guard
                .output()
                .contains("another live node uses this node.id")
        })
    });
}
