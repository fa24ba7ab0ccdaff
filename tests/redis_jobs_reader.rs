//! Redis-driven jobs (SPEC §6) against a real `redis-server` on 127.0.0.1 (free port), with a
//! recording [`JobApplier`] in place of a node:
//! - good jobs are applied exactly once, bad ones never, each gets its result (accepted, or
//!   the API's problem naming the field) under `{p}:job:{id}` and in `{p}:job-results`, and
//!   every entry is acknowledged — including a job added before any reader existed;
//! - two readers (two nodes) on one stream share 40 jobs, each applied once in total;
//! - a job whose apply answers 503 stays pending, unanswered, and another node takes it over
//!   once it has been idle long enough, and applies it;
//! - a job read by a node that died before answering is applied: at once by that node when
//!   it comes back under its name, by another once idle long enough;
//! - a reader rides out a Redis restart, and stops when asked.

mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::free_port;
use common::redis::RedisServer;
use redis::aio::MultiplexedConnection;
use redis::Value;
use serde_json::Value as Json;
use whep_bridge::api::problem::Problem;
use whep_bridge::api::spec::parse_stream_request;
use whep_bridge::cluster::coordinator::BoxFuture;
use whep_bridge::cluster::jobs::{Job, JobApplier, JobOutcome};
use whep_bridge::cluster::redis::jobs::{JobReader, JobReaderSettings};
use whep_bridge::cluster::redis::keys::{Keys, JOBS_GROUP};

/// Records every job it is given; answers like a node would, or 503 when `unavailable`.
#[derive(Default)]
struct Recorder {
    jobs: Mutex<Vec<Job>>,
    unavailable: bool,
}

impl Recorder {
    fn jobs(&self) -> Vec<Job> {
        self.jobs.lock().unwrap().clone()
    }
}

impl JobApplier for Recorder {
    fn apply(&self, job: Job) -> BoxFuture<'_, Result<JobOutcome, Problem>> {
        Box::pin(async move {
            let outcome = match &job {
                Job::Start(_) => JobOutcome::Created,
                Job::Stop { .. } => JobOutcome::Stopped,
            };
            self.jobs.lock().unwrap().push(job);
            if self.unavailable {
                Err(Problem::unavailable("test: coordinator unreachable"))
            } else {
                Ok(outcome)
            }
        })
    }
}

fn spec(id: &str) -> String {
    format!(
        r#"{{"stmId":"{id}","whepUrl":"http://127.0.0.1:1985/rtc/v1/whep/?app=live&stream={id}"}}"#
    )
}

fn start_job(id: &str) -> Job {
    Job::Start(parse_stream_request(spec(id).as_bytes(), None).unwrap())
}

/// The readers' log lines, shown for failing tests (`RUST_LOG` overrides the filter).
fn logs() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("whep_bridge=debug"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_test_writer()
        .try_init();
}

/// Fast settings for tests: short block, frequent claims of entries idle 200 ms.
fn fast(node: &str) -> JobReaderSettings {
    let mut s = JobReaderSettings::new(node, Duration::from_secs(1));
    s.block = Duration::from_millis(200);
    s.claim_every = Duration::from_millis(100);
    s.claim_idle = Duration::from_millis(200);
    s
}

fn spawn(
    server: &RedisServer,
    keys: &Keys,
    settings: JobReaderSettings,
    r: &Arc<Recorder>,
) -> JobReader {
    logs();
    let client = redis::Client::open(server.url()).unwrap();
    JobReader::spawn(client, keys.clone(), settings, r.clone())
}

async fn connect(server: &RedisServer) -> MultiplexedConnection {
    redis::Client::open(server.url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap()
}

async fn xadd(con: &mut MultiplexedConnection, keys: &Keys, fields: &[(&str, &str)]) -> String {
    let mut cmd = redis::cmd("XADD");
    cmd.arg(keys.jobs()).arg("*");
    for (name, value) in fields {
        cmd.arg(*name).arg(*value);
    }
    cmd.query_async(con).await.unwrap()
}

async fn xlen(con: &mut MultiplexedConnection, key: &str) -> usize {
    redis::cmd("XLEN").arg(key).query_async(con).await.unwrap()
}

/// How many entries of the jobs stream are delivered and not acknowledged.
async fn pending(con: &mut MultiplexedConnection, keys: &Keys) -> i64 {
    let summary: Value = redis::cmd("XPENDING")
        .arg(keys.jobs())
        .arg(JOBS_GROUP)
        .query_async(con)
        .await
        .unwrap();
    match summary {
        Value::Array(items) => match items.first() {
            Some(Value::Int(n)) => *n,
            other => panic!("XPENDING count: {other:?}"),
        },
        other => panic!("XPENDING: {other:?}"),
    }
}

async fn result_of(con: &mut MultiplexedConnection, keys: &Keys, id: &str) -> Option<Json> {
    let raw: Option<String> = redis::cmd("GET")
        .arg(keys.job_result(id))
        .query_async(con)
        .await
        .unwrap();
    raw.map(|r| serde_json::from_str(&r).unwrap())
}

/// Waits (bounded) until `{p}:job-results` holds `n` entries.
async fn wait_results(con: &mut MultiplexedConnection, keys: &Keys, n: usize, limit: Duration) {
    let deadline = Instant::now() + limit;
    loop {
        let len = xlen(con, &keys.job_results()).await;
        assert!(len <= n, "{len} results for {n} jobs");
        if len == n {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{len} of {n} results after {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn stop(reader: JobReader) {
    tokio::time::timeout(Duration::from_secs(5), reader.shutdown())
        .await
        .expect("the reader stops within 5 s");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_are_validated_applied_once_answered_and_acknowledged() {
    let server = RedisServer::start();
    let keys = Keys::new("t1");
    let mut con = connect(&server).await;
    // Added before any node read the stream: still applied (the group starts at 0).
    let good = xadd(&mut con, &keys, &[("op", "start"), ("spec", &spec("cam1"))]).await;
    let rec = Arc::new(Recorder::default());
    let reader = spawn(
        &server,
        &keys,
        JobReaderSettings::new("n1", Duration::from_secs(1)),
        &rec,
    );
    let bad_spec = r#"{"stmId":"cam2","whepUrl":"http://127.0.0.1/w","bogus":1}"#;
    let bad = xadd(&mut con, &keys, &[("op", "start"), ("spec", bad_spec)]).await;
    let stop_id = xadd(&mut con, &keys, &[("op", "stop"), ("stmId", "cam1")]).await;
    let bad_op = xadd(&mut con, &keys, &[("op", "restart"), ("stmId", "cam1")]).await;
    wait_results(&mut con, &keys, 4, Duration::from_secs(10)).await;
    tokio::time::sleep(Duration::from_millis(300)).await;

    // Exactly the valid jobs, once each, in order.
    assert_eq!(
        rec.jobs(),
        vec![
            start_job("cam1"),
            Job::Stop {
                stm_id: "cam1".into()
            }
        ]
    );

    let r = result_of(&mut con, &keys, &good)
        .await
        .expect("good result");
    assert_eq!(
        r,
        serde_json::json!({"jobId": good, "node": "n1", "op": "start", "stmId": "cam1",
            "status": "accepted", "outcome": "created"})
    );
    let r = result_of(&mut con, &keys, &bad).await.expect("bad result");
    assert_eq!(r["status"], "rejected");
    assert_eq!(
        (r["op"].as_str(), r["stmId"].as_str()),
        (Some("start"), Some("cam2"))
    );
    assert_eq!(r["problem"]["status"], 400);
    assert_eq!(r["problem"]["field"], "bogus");
    assert_eq!(
        r["problem"]["type"],
        "urn:whep-bridge:problem:invalid-request"
    );
    let r = result_of(&mut con, &keys, &stop_id)
        .await
        .expect("stop result");
    assert_eq!(
        (r["status"].as_str(), r["outcome"].as_str()),
        (Some("accepted"), Some("stopped"))
    );
    let r = result_of(&mut con, &keys, &bad_op)
        .await
        .expect("bad op result");
    assert_eq!(r["status"], "rejected");
    assert_eq!(r["problem"]["field"], "op");
    assert!(r.get("op").is_none(), "an unknown op is not echoed: {r}");

    // Results expire after a day.
    let ttl: i64 = redis::cmd("TTL")
        .arg(keys.job_result(&good))
        .query_async(&mut con)
        .await
        .unwrap();
    assert!((86_000..=86_400).contains(&ttl), "ttl {ttl}");

    // The results stream holds the same documents, one per job, in order.
    let entries: Vec<(String, Vec<(String, String)>)> = redis::cmd("XRANGE")
        .arg(keys.job_results())
        .arg("-")
        .arg("+")
        .query_async(&mut con)
        .await
        .unwrap();
    let ids: Vec<&str> = entries
        .iter()
        .map(|(_, f)| f.iter().find(|(n, _)| n == "jobId").unwrap().1.as_str())
        .collect();
    assert_eq!(ids, [&good, &bad, &stop_id, &bad_op]);
    for (_, fields) in &entries {
        let id = &fields.iter().find(|(n, _)| n == "jobId").unwrap().1;
        let json = &fields.iter().find(|(n, _)| n == "result").unwrap().1;
        let stored = result_of(&mut con, &keys, id).await.unwrap();
        assert_eq!(serde_json::from_str::<Json>(json).unwrap(), stored);
    }
    assert_eq!(
        pending(&mut con, &keys).await,
        0,
        "every entry acknowledged"
    );

    // Stopped means stopped: a later job waits for the next reader.
    stop(reader).await;
    xadd(&mut con, &keys, &[("op", "stop"), ("stmId", "cam9")]).await;
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    assert_eq!(rec.jobs().len(), 2);
    assert_eq!(xlen(&mut con, &keys.job_results()).await, 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_share_forty_jobs_each_applied_once() {
    let server = RedisServer::start();
    let keys = Keys::new("t2");
    let mut con = connect(&server).await;
    let recs = [Arc::new(Recorder::default()), Arc::new(Recorder::default())];
    let readers: Vec<JobReader> = ["n1", "n2"]
        .iter()
        .zip(&recs)
        .map(|(node, rec)| {
            let mut s = fast(node);
            s.batch = 4;
            // No takeover of a live node's jobs in this test: only the group splits them.
            s.claim_idle = Duration::from_secs(30);
            spawn(&server, &keys, s, rec)
        })
        .collect();
    // Both consumers joined the group (a consumer appears with its first read).
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let consumers: Vec<Value> = redis::cmd("XINFO")
            .arg("CONSUMERS")
            .arg(keys.jobs())
            .arg(JOBS_GROUP)
            .query_async(&mut con)
            .await
            .unwrap_or_default();
        if consumers.len() == 2 {
            break;
        }
        assert!(Instant::now() < deadline, "readers never joined the group");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut job_ids = Vec::new();
    for i in 0..40 {
        let id = format!("s{i:02}");
        job_ids.push((
            xadd(&mut con, &keys, &[("op", "start"), ("spec", &spec(&id))]).await,
            id,
        ));
        if i % 8 == 0 {
            tokio::time::sleep(Duration::from_millis(30)).await;
        }
    }
    wait_results(&mut con, &keys, 40, Duration::from_secs(15)).await;
    tokio::time::sleep(Duration::from_millis(500)).await;

    let mut applied: Vec<String> = recs
        .iter()
        .flat_map(|r| r.jobs())
        .map(|j| j.stm_id().to_owned())
        .collect();
    assert_eq!(applied.len(), 40, "40 applies in total");
    let split = (recs[0].jobs().len(), recs[1].jobs().len());
    assert!(
        split.0 > 0 && split.1 > 0,
        "both nodes took jobs: {split:?}"
    );
    applied.sort();
    let expected: Vec<String> = job_ids.iter().map(|(_, id)| id.clone()).collect();
    assert_eq!(applied, expected, "each job applied once");
    // Each result names the node whose applier got the job.
    for (job, stm_id) in &job_ids {
        let r = result_of(&mut con, &keys, job).await.expect("result");
        assert_eq!(r["stmId"], stm_id.as_str());
        let node = r["node"].as_str().unwrap();
        let rec = &recs[if node == "n1" { 0 } else { 1 }];
        assert!(
            rec.jobs().iter().any(|j| j.stm_id() == stm_id),
            "{node} applied {stm_id}"
        );
    }
    assert_eq!(pending(&mut con, &keys).await, 0);
    for reader in readers {
        stop(reader).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_the_cluster_could_not_take_is_applied_later_by_another_node() {
    let server = RedisServer::start();
    let keys = Keys::new("t3");
    let mut con = connect(&server).await;
    let down = Arc::new(Recorder {
        unavailable: true,
        ..Recorder::default()
    });
    let a = spawn(&server, &keys, fast("n1"), &down);
    let job = xadd(&mut con, &keys, &[("op", "start"), ("spec", &spec("cam7"))]).await;
    let deadline = Instant::now() + Duration::from_secs(5);
    while down.jobs().is_empty() {
        assert!(Instant::now() < deadline, "the job was never tried");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop(a).await;
    // Not answered, not acknowledged: still the cluster's to do.
    assert!(result_of(&mut con, &keys, &job).await.is_none());
    assert_eq!(xlen(&mut con, &keys.job_results()).await, 0);
    assert_eq!(pending(&mut con, &keys).await, 1);
    assert!(down.jobs().iter().all(|j| *j == start_job("cam7")));

    let up = Arc::new(Recorder::default());
    let b = spawn(&server, &keys, fast("n2"), &up);
    wait_results(&mut con, &keys, 1, Duration::from_secs(10)).await;
    let r = result_of(&mut con, &keys, &job).await.expect("result");
    assert_eq!(
        (r["status"].as_str(), r["node"].as_str()),
        (Some("accepted"), Some("n2"))
    );
    assert_eq!(up.jobs(), vec![start_job("cam7")]);
    assert_eq!(pending(&mut con, &keys).await, 0);
    stop(b).await;
}

/// Reads the next new entry as consumer `node` and never acknowledges it: a node that died
/// between reading a job and answering it.
async fn read_and_die(con: &mut MultiplexedConnection, keys: &Keys, node: &str) {
    let _: Value = redis::cmd("XREADGROUP")
        .arg("GROUP")
        .arg(JOBS_GROUP)
        .arg(node)
        .arg("COUNT")
        .arg(1)
        .arg("STREAMS")
        .arg(keys.jobs())
        .arg(">")
        .query_async(con)
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_of_a_node_that_died_mid_way_are_applied() {
    let server = RedisServer::start();
    let keys = Keys::new("t5");
    let mut con = connect(&server).await;
    let _: () = redis::cmd("XGROUP")
        .arg("CREATE")
        .arg(keys.jobs())
        .arg(JOBS_GROUP)
        .arg("0")
        .arg("MKSTREAM")
        .query_async(&mut con)
        .await
        .unwrap();
    let orphan = xadd(&mut con, &keys, &[("op", "stop"), ("stmId", "orphan")]).await;
    read_and_die(&mut con, &keys, "n9").await;
    let own = xadd(&mut con, &keys, &[("op", "stop"), ("stmId", "own")]).await;
    read_and_die(&mut con, &keys, "n1").await;
    assert_eq!(pending(&mut con, &keys).await, 2);

    // n1 comes back under its own name: its own pending job is applied at once (no idle
    // wait); n9's is taken over once idle for claim_idle.
    let rec = Arc::new(Recorder::default());
    let mut settings = fast("n1");
    settings.claim_idle = Duration::from_millis(1_500);
    let t0 = Instant::now();
    let reader = spawn(&server, &keys, settings, &rec);
    wait_results(&mut con, &keys, 1, Duration::from_secs(5)).await;
    assert!(
        t0.elapsed() < Duration::from_millis(1_000),
        "own job at once"
    );
    assert_eq!(
        result_of(&mut con, &keys, &own).await.unwrap()["stmId"],
        "own"
    );
    wait_results(&mut con, &keys, 2, Duration::from_secs(10)).await;
    let r = result_of(&mut con, &keys, &orphan).await.unwrap();
    assert_eq!(
        (r["stmId"].as_str(), r["node"].as_str()),
        (Some("orphan"), Some("n1"))
    );
    let ids: Vec<String> = rec.jobs().iter().map(|j| j.stm_id().to_owned()).collect();
    assert_eq!(ids, ["own", "orphan"]);
    assert_eq!(pending(&mut con, &keys).await, 0);
    stop(reader).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_reader_rides_out_a_redis_restart() {
    let port = free_port();
    let server = RedisServer::start_on(port);
    let keys = Keys::new("t4");
    let rec = Arc::new(Recorder::default());
    let reader = spawn(&server, &keys, fast("n1"), &rec);
    let mut con = connect(&server).await;
    xadd(&mut con, &keys, &[("op", "stop"), ("stmId", "before")]).await;
    wait_results(&mut con, &keys, 1, Duration::from_secs(10)).await;

    drop(server); // kills redis-server
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    // A fresh, empty Redis on the same address: the group is created again.
    let server = RedisServer::start_on(port);
    let mut con = connect(&server).await;
    xadd(&mut con, &keys, &[("op", "stop"), ("stmId", "after")]).await;
    wait_results(&mut con, &keys, 1, Duration::from_secs(15)).await;
    let ids: Vec<String> = rec.jobs().iter().map(|j| j.stm_id().to_owned()).collect();
    assert_eq!(ids, ["before", "after"]);
    stop(reader).await;
}
