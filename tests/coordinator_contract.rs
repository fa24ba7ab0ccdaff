//! The `Coordinator` contract (SPEC §6), run against both implementations: the embedded
//! in-memory one and the Redis one on a real `redis-server` (127.0.0.1, free port). Same
//! calls, same answers — so a node behaves the same alone and in a cluster. Redis-only
//! properties follow: expiry by Redis's clock, racing nodes never both own a stream, a
//! prefix isolates deployments, and a dead Redis is a bounded error, not a hang.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::net::free_port;
use common::redis::RedisServer;
use whep_bridge::api::spec::StreamRequest;
use whep_bridge::cluster::handover::HandoverPolicy;
use whep_bridge::cluster::redis::{RedisCoordinator, RedisSettings};
use whep_bridge::cluster::{Coordinator, EmbeddedCoordinator, NodeInfo, Put};
use whep_bridge::pipeline::messages::StreamState;

fn run<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(f)
}

fn request(id: &str, stream: &str) -> StreamRequest {
    serde_json::from_value(serde_json::json!({
        "stmId": id,
        "whepUrl": format!("http://127.0.0.1:1985/rtc/v1/whep/?app=live&stream={stream}"),
        "wsHeaders": {"Authorization": "Bearer x"},
    }))
    .expect("request")
}

fn redis(server: &RedisServer, prefix: &str, ttl: Duration) -> RedisCoordinator {
    let mut s = RedisSettings::new(&server.url());
    s.prefix = prefix.to_owned();
    s.lease_ttl = ttl;
    RedisCoordinator::connect_lazy(s).expect("client")
}

/// What every coordinator must do.
async fn contract(c: &dyn Coordinator) {
    // Specs: create, exists, replace, list, remove.
    let a = request("cam:1", "a");
    assert_eq!(c.put_stream(&a, false).await.ok(), Some(Put::Created));
    assert_eq!(c.put_stream(&a, false).await.ok(), Some(Put::Exists));
    let b = request("cam:1", "b");
    assert_eq!(c.put_stream(&b, true).await.ok(), Some(Put::Replaced));
    // Storing the same spec again changes nothing (idempotent PUT, repeated jobs).
    assert_eq!(c.put_stream(&b, true).await.ok(), Some(Put::Unchanged));
    assert_eq!(
        c.put_stream(&request("cam:2", "c"), true).await.ok(),
        Some(Put::Created)
    );
    let all = c.streams().await.expect("streams");
    assert_eq!(all, vec![b.clone(), request("cam:2", "c")]);

    // Leases: only stored streams, one owner, epochs grow per acquisition.
    assert_eq!(c.acquire("nope", "n1").await.ok(), Some(None));
    let l1 = c
        .acquire("cam:1", "n1")
        .await
        .expect("ok")
        .expect("granted");
    assert_eq!((l1.node.as_str(), l1.epoch), ("n1", 1));
    assert_eq!(
        c.orphans().await.ok(),
        Some(vec!["cam:2".to_owned()]),
        "cam:1 is held"
    );
    assert_eq!(c.acquire("cam:1", "n2").await.ok(), Some(None), "fenced");
    assert_eq!(
        c.acquire("cam:1", "n1").await.ok().flatten(),
        Some(l1.clone()),
        "re-asking keeps the epoch"
    );
    assert!(c
        .renew(std::slice::from_ref(&l1))
        .await
        .expect("renew")
        .is_empty());
    c.release(&l1).await.expect("release");
    assert_eq!(
        c.renew(std::slice::from_ref(&l1)).await.expect("renew"),
        vec![l1.clone()]
    );
    let l2 = c
        .acquire("cam:1", "n2")
        .await
        .expect("ok")
        .expect("granted");
    assert_eq!(l2.epoch, 2);
    assert_eq!(c.owner("cam:1").await.ok(), Some(Some(l2.clone())));
    assert_eq!(c.owner("cam:2").await.ok(), Some(None), "never acquired");
    // A stale holder can neither renew nor release the new owner's lease.
    c.release(&l1).await.expect("release");
    assert!(c
        .renew(std::slice::from_ref(&l2))
        .await
        .expect("renew")
        .is_empty());

    // Deleting a stream takes its lease away: the owner's next renewal fails.
    assert_eq!(c.remove_stream("cam:1").await.ok(), Some(true));
    assert_eq!(c.remove_stream("cam:1").await.ok(), Some(false));
    assert_eq!(
        c.renew(std::slice::from_ref(&l2)).await.expect("renew"),
        vec![l2]
    );
    assert_eq!(
        c.streams().await.expect("streams"),
        vec![request("cam:2", "c")]
    );

    // Hand-over: release plus a cooldown for the giver; a second one in the window doubles.
    let policy = HandoverPolicy {
        after: Duration::from_secs(10),
        cooldown: Duration::from_secs(60),
        cooldown_max: Duration::from_secs(100),
    };
    let h = request("cam:3", "h");
    assert_eq!(c.put_stream(&h, false).await.ok(), Some(Put::Created));
    let h1 = c
        .acquire("cam:3", "n1")
        .await
        .expect("ok")
        .expect("granted");
    assert_eq!(
        c.hand_over(&h1, &policy).await.ok(),
        Some(Some(Duration::from_secs(60)))
    );
    assert_eq!(c.owner("cam:3").await.ok(), Some(None), "released");
    assert_eq!(c.hand_over(&h1, &policy).await.ok(), Some(None), "not ours");
    let h2 = c
        .acquire("cam:3", "n2")
        .await
        .expect("ok")
        .expect("granted");
    assert_eq!(h2.epoch, h1.epoch + 1);
    assert_eq!(
        c.hand_over(&h2, &policy).await.ok(),
        Some(Some(Duration::from_secs(100))),
        "doubled, capped"
    );
    let cooling = c.cooling().await.expect("cooling");
    assert_eq!(
        cooling.get("cam:3").cloned().unwrap_or_default(),
        ["n1".to_owned(), "n2".to_owned()].into()
    );
    assert_eq!(c.remove_stream("cam:3").await.ok(), Some(true));
    assert!(
        c.cooling().await.expect("cooling").is_empty(),
        "forgotten with the stream"
    );

    // Heartbeats list the node with its load.
    let info = NodeInfo {
        node: "n1".into(),
        address: "127.0.0.1:8080".into(),
        streams: 3,
        arbiter_loads: vec![2, 1],
        stream_states: [("cam:2".to_owned(), StreamState::Live)].into(),
    };
    c.heartbeat(&info).await.expect("heartbeat");
    assert_eq!(c.nodes().await.expect("nodes"), vec![info]);
    // A draining node leaves the list at once.
    c.leave("n1").await.expect("leave");
    assert!(c.nodes().await.expect("nodes").is_empty());
}

#[test]
fn embedded_coordinator_keeps_the_contract() {
    run(contract(&EmbeddedCoordinator::default()));
}

#[test]
fn redis_coordinator_keeps_the_contract() {
    let server = RedisServer::start();
    run(async {
        let c = redis(&server, "contract", Duration::from_secs(3));
        contract(&c).await;
    });
}

#[test]
fn redis_leases_expire_by_the_server_clock_and_the_next_owner_gets_a_higher_epoch() {
    let server = RedisServer::start();
    run(async {
        let c = redis(&server, "expiry", Duration::from_millis(400));
        c.put_stream(&request("s", "a"), false).await.expect("put");
        let a = c.acquire("s", "n1").await.expect("ok").expect("granted");
        // Renewed in time: kept.
        for _ in 0..3 {
            tokio::time::sleep(Duration::from_millis(200)).await;
            assert!(c
                .renew(std::slice::from_ref(&a))
                .await
                .expect("renew")
                .is_empty());
            assert_eq!(c.acquire("s", "n2").await.ok(), Some(None));
        }
        // Renewals stop (the node died): after the TTL another node takes over.
        tokio::time::sleep(Duration::from_millis(450)).await;
        let b = c.acquire("s", "n2").await.expect("ok").expect("expired");
        assert_eq!(b.epoch, a.epoch + 1);
        assert_eq!(
            c.renew(std::slice::from_ref(&a)).await.expect("renew"),
            vec![a]
        );
    });
}

#[test]
fn two_nodes_racing_for_100_streams_never_both_own_one() {
    let server = RedisServer::start();
    run(async {
        let n1 = Arc::new(redis(&server, "race", Duration::from_secs(5)));
        let n2 = Arc::new(redis(&server, "race", Duration::from_secs(5)));
        for i in 0..100 {
            n1.put_stream(&request(&format!("s{i}"), "x"), false)
                .await
                .expect("put");
        }
        let claim = |c: Arc<RedisCoordinator>, node: &'static str| {
            tokio::spawn(async move {
                let mut won = Vec::new();
                for i in 0..100 {
                    if let Some(l) = c.acquire(&format!("s{i}"), node).await.expect("acquire") {
                        won.push(l);
                    }
                }
                won
            })
        };
        let (w1, w2) = tokio::join!(claim(n1.clone(), "n1"), claim(n2.clone(), "n2"));
        let (w1, w2) = (w1.expect("task"), w2.expect("task"));
        let mut owner: BTreeMap<String, &str> = BTreeMap::new();
        for (l, node) in w1
            .iter()
            .map(|l| (l, "n1"))
            .chain(w2.iter().map(|l| (l, "n2")))
        {
            assert_eq!(l.epoch, 1, "{l:?}");
            assert!(
                owner.insert(l.stm_id.clone(), node).is_none(),
                "{} owned twice",
                l.stm_id
            );
        }
        assert_eq!(owner.len(), 100, "every stream has exactly one owner");
        // And Redis agrees: each loser's renewal of the winner's epoch under its own name fails.
        for l in &w1 {
            let forged = whep_bridge::cluster::Lease {
                node: "n2".into(),
                ..l.clone()
            };
            assert_eq!(
                n2.renew(std::slice::from_ref(&forged))
                    .await
                    .expect("renew")
                    .len(),
                1
            );
        }
    });
}

#[test]
fn prefixes_isolate_deployments() {
    let server = RedisServer::start();
    run(async {
        let a = redis(&server, "dep-a", Duration::from_secs(3));
        let b = redis(&server, "dep-b", Duration::from_secs(3));
        a.put_stream(&request("s", "x"), false).await.expect("put");
        assert!(b.streams().await.expect("streams").is_empty());
        assert_eq!(
            b.put_stream(&request("s", "y"), false).await.ok(),
            Some(Put::Created)
        );
        assert_eq!(
            a.acquire("s", "n").await.expect("ok").map(|l| l.epoch),
            Some(1)
        );
        assert_eq!(
            b.acquire("s", "n").await.expect("ok").map(|l| l.epoch),
            Some(1)
        );
    });
}

#[test]
fn an_unreachable_redis_is_a_bounded_error() {
    run(async {
        let mut s = RedisSettings::new(&format!("redis://127.0.0.1:{}/", free_port()));
        s.timeout = Duration::from_millis(300);
        let c = RedisCoordinator::connect_lazy(s).expect("lazy client needs no server");
        let t = Instant::now();
        let r = c.acquire("s", "n").await;
        assert!(r.is_err(), "{r:?}");
        assert!(
            t.elapsed() < Duration::from_secs(3),
            "took {:?}",
            t.elapsed()
        );
        assert!(c.nodes().await.is_err());
    });
}
