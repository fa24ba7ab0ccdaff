//! Jobs through Redis (SPEC §6), end to end: a plain Redis client XADDs to `{p}:jobs` and two
//! real nodes (one real `redis-server`, testsrc, a recording consumer, all on 127.0.0.1) apply
//! them. A start job runs the stream on some node; the same job again changes nothing; a
//! stop job stops it; an invalid job gets its problem written back and starts nothing; and
//! with two nodes reading, every job is applied exactly once.

mod common;

use std::time::Duration;

use common::cluster::{chunks_of, eventually, start_node, PREFIX};
use common::redis::RedisServer;
use common::testsrc::start_testsrc;
use common::ws_sink::WsSink;
use serde_json::{json, Value};

/// `XPENDING key group`: count, smallest and largest id, per-consumer counts.
type PendingSummary = (
    u64,
    Option<String>,
    Option<String>,
    Option<Vec<(String, String)>>,
);

fn xadd(con: &mut redis::Connection, fields: &[(&str, &str)]) -> String {
    let mut cmd = redis::cmd("XADD");
    cmd.arg(format!("{PREFIX}:jobs")).arg("*");
    for (k, v) in fields {
        cmd.arg(*k).arg(*v);
    }
    cmd.query(con).expect("XADD")
}

/// The result written back for job `id` (waits for it, bounded).
fn result(con: &mut redis::Connection, id: &str) -> Value {
    let mut out = Value::Null;
    eventually(
        &format!("result of job {id}"),
        Duration::from_secs(10),
        || {
            let raw: Option<String> = redis::cmd("GET")
                .arg(format!("{PREFIX}:job:{id}"))
                .query(con)
                .expect("GET");
            out = raw
                .and_then(|r| serde_json::from_str(&r).ok())
                .unwrap_or(Value::Null);
            !out.is_null()
        },
    );
    out
}

fn start_spec(id: &str, src: &str, sink: &WsSink) -> String {
    json!({
        "stmId": id,
        "whepUrl": format!("{src}/whep/{id}"),
        "wsUrl": sink.url("/c/{stmId}"),
        "output": {"envelope": "extended"},
    })
    .to_string()
}

#[test]
fn jobs_from_redis_start_and_stop_streams_once_and_report_errors() {
    let redis = RedisServer::start();
    let sink = WsSink::start();
    let (_src, src) = start_testsrc(&[]);
    let a = start_node("node-a", &redis.url());
    let _b = start_node("node-b", &redis.url());
    let client = redis::Client::open(redis.url()).expect("client");
    let mut con = client.get_connection().expect("redis");

    // A start job runs the stream (on whichever node the cluster picks).
    let spec = start_spec("job1", &src, &sink);
    let j1 = xadd(&mut con, &[("op", "start"), ("spec", &spec)]);
    let r = result(&mut con, &j1);
    assert_eq!(r["status"], "accepted", "{r}");
    assert_eq!(r["outcome"], "created", "{r}");
    assert_eq!(r["stmId"], "job1", "{r}");
    let v = a.wait_state("job1", "live", Duration::from_secs(15));
    assert_eq!(v["epoch"], 1, "{v}");
    eventually("audio of job1", Duration::from_secs(10), || {
        !chunks_of(&sink, "job1").is_empty()
    });

    // The same job again (a producer retrying) changes nothing: same run, same epoch.
    let j2 = xadd(&mut con, &[("op", "start"), ("spec", &spec)]);
    assert_eq!(result(&mut con, &j2)["outcome"], "unchanged");
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(a.get("job1")["epoch"], 1);

    // An invalid job: its problem names the field; nothing is stored.
    let bad =
        json!({"stmId": "job-bad", "whepUrl": format!("{src}/whep/x"), "bogus": 1}).to_string();
    let j3 = xadd(&mut con, &[("op", "start"), ("spec", &bad)]);
    let r = result(&mut con, &j3);
    assert_eq!(r["status"], "rejected", "{r}");
    assert_eq!(r["problem"]["status"], 400, "{r}");
    assert_eq!(r["problem"]["field"], "bogus", "{r}");
    let j4 = xadd(&mut con, &[("op", "launch"), ("stmId", "x")]);
    assert_eq!(result(&mut con, &j4)["problem"]["field"], "op");
    let stored: Vec<String> = redis::cmd("HKEYS")
        .arg(format!("{PREFIX}:streams"))
        .query(&mut con)
        .expect("HKEYS");
    assert_eq!(stored, ["job1"], "a rejected job stored something");

    // A stop job stops it on its owner.
    let j5 = xadd(&mut con, &[("op", "stop"), ("stmId", "job1")]);
    assert_eq!(result(&mut con, &j5)["outcome"], "stopped");
    eventually("job1 gone", Duration::from_secs(5), || {
        a.call("GET", "/v1/streams/job1", b"", None).status == 404
    });

    // Twenty jobs with both nodes reading: each applied exactly once.
    let ids: Vec<String> = (0..20).map(|i| format!("many{i:02}")).collect();
    let jobs: Vec<String> = ids
        .iter()
        .map(|id| {
            xadd(
                &mut con,
                &[("op", "start"), ("spec", &start_spec(id, &src, &sink))],
            )
        })
        .collect();
    let mut appliers = std::collections::BTreeMap::new();
    for (id, job) in ids.iter().zip(&jobs) {
        let r = result(&mut con, job);
        assert_eq!(r["outcome"], "created", "{id}: {r}");
        *appliers
            .entry(r["node"].as_str().unwrap_or_default().to_owned())
            .or_insert(0) += 1;
    }
    eprintln!("20 jobs applied by {appliers:?}");
    let results: Vec<(String, Vec<(String, String)>)> = redis::cmd("XRANGE")
        .arg(format!("{PREFIX}:job-results"))
        .arg("-")
        .arg("+")
        .query(&mut con)
        .expect("XRANGE");
    for job in &jobs {
        let n = results
            .iter()
            .filter(|(_, f)| f.iter().any(|(k, v)| k == "jobId" && v == job))
            .count();
        assert_eq!(n, 1, "job {job} has {n} results");
    }
    let pending: PendingSummary = redis::cmd("XPENDING")
        .arg(format!("{PREFIX}:jobs"))
        .arg("whep-bridge")
        .query(&mut con)
        .expect("XPENDING");
    assert_eq!(pending.0, 0, "unacknowledged jobs: {pending:?}");
    for id in &ids {
        let v = a.wait_state(id, "live", Duration::from_secs(20));
        assert_eq!(v["epoch"], 1, "{id} applied more than once: {v}");
    }
}
