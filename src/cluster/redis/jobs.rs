//! The job reader: reads `{p}:jobs` (see [`crate::cluster::jobs`] for the entry and result
//! formats) in the consumer group [`JOBS_GROUP`] as consumer `<node>`, so each job goes to one
//! node, and applies it through a [`JobApplier`].
//!
//! - **Own connection.** A blocking `XREADGROUP` on the coordinator's shared multiplexed
//!   connection would hold every lease renewal behind it; the reader opens its own.
//! - **Group created at `0`** (`XGROUP CREATE … 0 MKSTREAM`, `BUSYGROUP` ignored, on every
//!   connection so a deleted group comes back): jobs added before any node ever started are
//!   applied too. Re-creating a group on a stream with history re-applies that history, which
//!   is harmless (jobs are idempotent) but is why producers should cap `{p}:jobs` (`XADD …
//!   MAXLEN ~ <n>`): applied entries are acknowledged, never deleted, by the nodes.
//! - **Result, then ack, atomically.** One Lua script stores the result (`SET NX EX`, so a
//!   job applied twice keeps its first result), appends it to `{p}:job-results` and `XACK`s
//!   the entry: a job is acknowledged if and only if its result was written.
//! - **Retries.** A job whose apply fails with a 503 problem (cluster unreachable, node
//!   draining; also an apply exceeding `apply_timeout`) is left pending. Every `claim_every`
//!   the reader takes over entries pending longer than `claim_idle` in the whole group
//!   (`XAUTOCLAIM`): its own 503s, and the jobs of a node that died between read and ack.
//!   On each (re)connection it also re-reads the entries still pending for its own name
//!   (a node restarted under the same name, a result write cut by an outage) at once.
//!   Applying again is harmless: jobs are idempotent by `stmId`.
//! - **Bounded.** Every Redis call is bounded by `timeout` (the read by `block + timeout`).
//!   Without Redis the reader reconnects every second, logging one warning per outage.
//! - **Stopping** ([`JobReader::shutdown`]) finishes the batch in hand, so no read entry is
//!   stranded; it takes at most about `block` plus that batch.
//!
//! Logs: one `info` per applied job (`jobId`, `op`, `stmId`, `outcome`), one `warn` per
//! rejected one (the problem's status, field and detail). Never the spec: it can hold tokens.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, FromRedisValue, RedisResult, Script, Value};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::keys::{Keys, JOBS_GROUP};
use crate::api::problem::Problem;
use crate::cluster::jobs::{
    fields_from_bytes, is_retryable, labels, parse_job, result_json, JobApplier, JobOutcome,
};

/// How long a job's result stays readable under `{p}:job:{entryId}`.
pub const RESULT_TTL: Duration = Duration::from_secs(86_400);

/// Approximate cap of `{p}:job-results` (`MAXLEN ~`).
pub const RESULTS_MAXLEN: u64 = 10_000;

/// Pause between two connection attempts while Redis is away.
const RECONNECT_PAUSE: Duration = Duration::from_secs(1);

/// Writes a job's result and acknowledges it, atomically. KEYS: result key, results stream,
/// jobs stream. ARGV: result JSON, TTL s, entry id, group, results MAXLEN. The first result of
/// a job wins (a second apply of a reclaimed job adds no second result). Returns XACK's count.
const FINISH: &str = r#"
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'EX', ARGV[2]) then
  redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[5], '*', 'jobId', ARGV[3], 'result', ARGV[1])
end
return redis.call('XACK', KEYS[3], ARGV[4], ARGV[3])
"#;

/// Settings of a [`JobReader`].
#[derive(Debug, Clone)]
pub struct JobReaderSettings {
    /// This node's id: its consumer name in the group, and the results' `node`.
    pub node: String,
    /// Bound on every Redis round trip (and on each connection attempt).
    pub timeout: Duration,
    /// How long one `XREADGROUP` waits for new jobs (`BLOCK`); also bounds how long a stop
    /// request waits.
    pub block: Duration,
    /// Entries per read or claim (`COUNT`).
    pub batch: usize,
    /// How often pending entries of the group are examined for takeover.
    pub claim_every: Duration,
    /// How long an entry must have been pending before it is taken over (`XAUTOCLAIM`
    /// min-idle-time): longer than any apply takes, so a live node's job is not taken.
    pub claim_idle: Duration,
    /// Bound on one [`JobApplier::apply`]; beyond it the job is retried later.
    pub apply_timeout: Duration,
}

impl JobReaderSettings {
    /// The defaults: 1 s block, 16 per batch, claims every 10 s of entries idle 30 s,
    /// applies bounded by 10 × `timeout`.
    pub fn new(node: &str, timeout: Duration) -> Self {
        Self {
            node: node.to_owned(),
            timeout,
            block: Duration::from_secs(1),
            batch: 16,
            claim_every: Duration::from_secs(10),
            claim_idle: Duration::from_secs(30),
            apply_timeout: timeout * 10,
        }
    }
}

/// A running job reader. Dropping it also stops the reader (after its batch in hand).
pub struct JobReader {
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl JobReader {
    /// Starts reading jobs. Must run inside a tokio runtime. Returns at once: Redis may be
    /// down, the reader connects when it can.
    pub fn spawn(
        client: redis::Client,
        keys: Keys,
        settings: JobReaderSettings,
        applier: Arc<dyn JobApplier>,
    ) -> Self {
        let (stop, stop_rx) = watch::channel(false);
        let reader = Reader {
            client,
            keys,
            finish: Script::new(FINISH),
            settings,
            applier,
            stop: stop_rx,
            down_since: None,
            next_claim: Instant::now(),
        };
        Self {
            stop,
            task: tokio::spawn(reader.run()),
        }
    }

    /// Asks the reader to stop, without waiting.
    pub fn stop(&self) {
        self.stop.send_replace(true);
    }

    /// Stops the reader and waits until it has (its batch in hand finished).
    pub async fn shutdown(self) {
        self.stop();
        if let Err(e) = self.task.await {
            tracing::warn!(error = %e, "job reader ended abnormally");
        }
    }

    pub fn is_finished(&self) -> bool {
        self.task.is_finished()
    }
}

/// [`JobReader::spawn`] with the default settings for `node`.
pub fn spawn_job_reader(
    client: redis::Client,
    keys: Keys,
    node: String,
    timeout: Duration,
    applier: Arc<dyn JobApplier>,
) -> JobReader {
    JobReader::spawn(
        client,
        keys,
        JobReaderSettings::new(&node, timeout),
        applier,
    )
}

/// Why a session with Redis ended (connection lost, timeout, unexpected reply): the reader
/// reconnects. Never holds entry contents.
type Trouble = String;

struct Reader {
    client: redis::Client,
    keys: Keys,
    finish: Script,
    settings: JobReaderSettings,
    applier: Arc<dyn JobApplier>,
    stop: watch::Receiver<bool>,
    /// Set while Redis is unreachable: one warning per outage, not one per attempt.
    down_since: Option<Instant>,
    next_claim: Instant,
}

/// `fut`, failing with a [`Trouble`] naming `what` when it errs or outlasts `limit`.
async fn bounded<T>(
    limit: Duration,
    what: &str,
    fut: impl Future<Output = RedisResult<T>>,
) -> Result<T, Trouble> {
    match tokio::time::timeout(limit, fut).await {
        Ok(Ok(v)) => Ok(v),
        // RedisError's text never contains the URL's password.
        Ok(Err(e)) => Err(format!("{what}: {e}")),
        Err(_) => Err(format!("{what}: no answer within {limit:?}")),
    }
}

/// Runs `cmd`, bounded like [`bounded`].
async fn call<T: FromRedisValue>(
    con: &mut MultiplexedConnection,
    limit: Duration,
    what: &str,
    cmd: redis::Cmd,
) -> Result<T, Trouble> {
    bounded(limit, what, cmd.query_async(con)).await
}

impl Reader {
    fn stopping(&self) -> bool {
        // A dropped JobReader (sender gone) means stop too.
        *self.stop.borrow() || self.stop.has_changed().is_err()
    }

    async fn run(mut self) {
        tracing::info!(node = %self.settings.node, stream = %self.keys.jobs(), group = JOBS_GROUP,
            "reading Redis jobs");
        while !self.stopping() {
            if let Err(trouble) = self.session().await {
                self.outage(&trouble);
                let mut stop = self.stop.clone();
                tokio::select! {
                    _ = tokio::time::sleep(RECONNECT_PAUSE) => {}
                    _ = stop.changed() => {}
                }
            }
        }
        tracing::info!(node = %self.settings.node, "stopped reading Redis jobs");
    }

    fn outage(&mut self, trouble: &str) {
        if self.down_since.is_none() {
            tracing::warn!(error = %trouble, "cannot read Redis jobs; reconnecting every second");
            self.down_since = Some(Instant::now());
        } else {
            tracing::debug!(error = %trouble, "still cannot read Redis jobs");
        }
    }

    /// One connection's life: until Redis fails (`Err`) or a stop is asked (`Ok`).
    async fn session(&mut self) -> Result<(), Trouble> {
        let timeout = self.settings.timeout;
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(timeout))
            .set_response_timeout(Some(self.settings.block + timeout));
        let mut con = bounded(
            timeout,
            "connect",
            self.client
                .get_multiplexed_async_connection_with_config(&config),
        )
        .await?;
        self.create_group(&mut con).await?;
        if let Some(since) = self.down_since.take() {
            tracing::info!(down_for = ?since.elapsed(), "reading Redis jobs again");
        }
        self.own_pending(&mut con).await?;
        while !self.stopping() {
            if Instant::now() >= self.next_claim {
                self.reclaim(&mut con).await?;
                self.next_claim = Instant::now() + self.settings.claim_every;
            }
            let block_ms = self.settings.block.as_millis().max(1) as u64;
            let read = self.read_cmd(Some(block_ms), ">");
            let limit = self.settings.block + timeout;
            let reply: Value = call(&mut con, limit, "XREADGROUP", read).await?;
            self.handle_all(&mut con, parse_read_reply(reply)?).await?;
        }
        Ok(())
    }

    /// `XREADGROUP` for this consumer: `>` for new entries, an id for its own pending ones.
    fn read_cmd(&self, block_ms: Option<u64>, after: &str) -> redis::Cmd {
        let mut read = redis::cmd("XREADGROUP");
        read.arg("GROUP")
            .arg(JOBS_GROUP)
            .arg(&self.settings.node)
            .arg("COUNT")
            .arg(self.settings.batch);
        if let Some(ms) = block_ms {
            read.arg("BLOCK").arg(ms);
        }
        read.arg("STREAMS").arg(self.keys.jobs()).arg(after);
        read
    }

    async fn create_group(&self, con: &mut MultiplexedConnection) -> Result<(), Trouble> {
        let mut create = redis::cmd("XGROUP");
        create
            .arg("CREATE")
            .arg(self.keys.jobs())
            .arg(JOBS_GROUP)
            .arg("0")
            .arg("MKSTREAM");
        let created = create.query_async::<()>(con);
        match tokio::time::timeout(self.settings.timeout, created).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) if e.code() == Some("BUSYGROUP") => Ok(()),
            Ok(Err(e)) => Err(format!("XGROUP CREATE: {e}")),
            Err(_) => Err(format!(
                "XGROUP CREATE: no answer within {:?}",
                self.settings.timeout
            )),
        }
    }

    /// Entries delivered to this consumer name earlier and never acknowledged, oldest first.
    async fn own_pending(&self, con: &mut MultiplexedConnection) -> Result<(), Trouble> {
        let mut after = "0".to_owned();
        while !self.stopping() {
            let read = self.read_cmd(None, &after);
            let reply: Value = call(con, self.settings.timeout, "XREADGROUP", read).await?;
            let entries = parse_read_reply(reply)?;
            let Some(last) = entries.last() else {
                break;
            };
            // Entries left pending again (a 503) are skipped by reading on after them.
            after = last.id.clone();
            tracing::info!(
                count = entries.len(),
                "re-reading jobs pending for this node"
            );
            self.handle_all(con, entries).await?;
        }
        Ok(())
    }

    /// Takes over, and applies, entries pending longer than `claim_idle` in the group.
    async fn reclaim(&self, con: &mut MultiplexedConnection) -> Result<(), Trouble> {
        let idle_ms = self.settings.claim_idle.as_millis() as u64;
        let mut cursor = "0-0".to_owned();
        loop {
            let mut claim = redis::cmd("XAUTOCLAIM");
            claim
                .arg(self.keys.jobs())
                .arg(JOBS_GROUP)
                .arg(&self.settings.node)
                .arg(idle_ms)
                .arg(&cursor)
                .arg("COUNT")
                .arg(self.settings.batch);
            let reply: Value = call(con, self.settings.timeout, "XAUTOCLAIM", claim).await?;
            let (next, entries) = parse_autoclaim_reply(reply)?;
            if !entries.is_empty() {
                tracing::info!(count = entries.len(), "took over jobs left pending");
            }
            self.handle_all(con, entries).await?;
            if next == "0-0" || self.stopping() {
                return Ok(());
            }
            cursor = next;
        }
    }

    async fn handle_all(
        &self,
        con: &mut MultiplexedConnection,
        entries: Vec<Entry>,
    ) -> Result<(), Trouble> {
        for entry in entries {
            self.handle(con, entry).await?;
        }
        Ok(())
    }

    /// Validates, applies and reports one entry. `Err` only for Redis trouble: the entry
    /// then stays pending and is handled again after reconnecting.
    async fn handle(&self, con: &mut MultiplexedConnection, entry: Entry) -> Result<(), Trouble> {
        let id = entry.id;
        let Some(raw) = entry.fields else {
            // Deleted from the stream (trimmed) while pending: nothing left to apply.
            let mut ack = redis::cmd("XACK");
            ack.arg(self.keys.jobs()).arg(JOBS_GROUP).arg(&id);
            call::<i64>(con, self.settings.timeout, "XACK", ack).await?;
            return Ok(());
        };
        let (job, op, stm_id) = match fields_from_bytes(raw) {
            Err(p) => (Err(p), None, None),
            Ok(fields) => match parse_job(&fields) {
                Ok(job) => {
                    let (op, stm_id) = (Some(job.op()), Some(job.stm_id().to_owned()));
                    (Ok(job), op, stm_id)
                }
                Err(p) => {
                    let (op, stm_id) = labels(&fields);
                    (Err(p), op, stm_id)
                }
            },
        };
        let result: Result<JobOutcome, Problem> = match job {
            Ok(job) => {
                match tokio::time::timeout(self.settings.apply_timeout, self.applier.apply(job))
                    .await
                {
                    Ok(r) => r,
                    Err(_) => Err(Problem::unavailable(format!(
                        "applying the job took longer than {:?}",
                        self.settings.apply_timeout
                    ))),
                }
            }
            Err(p) => Err(p),
        };
        let op_l = op.unwrap_or("-");
        let stm_l = stm_id.as_deref().unwrap_or("-");
        if let Err(p) = &result {
            if is_retryable(p) {
                tracing::warn!(job_id = %id, op = op_l, stm_id = stm_l, detail = %p.detail,
                    "job not applied now; left pending for a retry");
                return Ok(());
            }
        }
        let json = result_json(&id, &self.settings.node, op, stm_id.as_deref(), &result);
        let mut finish = self.finish.prepare_invoke();
        finish
            .key(self.keys.job_result(&id))
            .key(self.keys.job_results())
            .key(self.keys.jobs())
            .arg(json)
            .arg(RESULT_TTL.as_secs())
            .arg(&id)
            .arg(JOBS_GROUP)
            .arg(RESULTS_MAXLEN);
        let written = finish.invoke_async::<i64>(con);
        bounded(self.settings.timeout, "writing a job result", written).await?;
        match &result {
            Ok(outcome) => tracing::info!(job_id = %id, op = op_l, stm_id = stm_l,
                outcome = outcome.as_str(), "job applied"),
            Err(p) => tracing::warn!(job_id = %id, op = op_l, stm_id = stm_l, status = p.status,
                field = p.field.as_deref().unwrap_or("-"), detail = %p.detail, "job rejected"),
        }
        Ok(())
    }
}

/// An entry's field names and values, as stored (bytes: checked for UTF-8 by the core).
type RawFields = Vec<(Vec<u8>, Vec<u8>)>;

/// One stream entry as read; `fields` is `None` for an entry deleted while pending.
#[derive(Debug, PartialEq)]
struct Entry {
    id: String,
    fields: Option<RawFields>,
}

/// The kind of a reply value, for errors (never its content: entries can hold tokens).
fn kind(v: &Value) -> &'static str {
    match v {
        Value::Nil => "nil",
        Value::Int(_) => "an integer",
        Value::BulkString(_) | Value::SimpleString(_) | Value::Okay => "a string",
        Value::Array(_) => "an array",
        Value::Map(_) => "a map",
        _ => "an unexpected value",
    }
}

fn bytes(v: Value) -> Result<Vec<u8>, Trouble> {
    match v {
        Value::BulkString(b) => Ok(b),
        Value::SimpleString(s) => Ok(s.into_bytes()),
        Value::Int(i) => Ok(i.to_string().into_bytes()),
        other => Err(format!("expected a string, got {}", kind(&other))),
    }
}

fn text(v: Value) -> Result<String, Trouble> {
    String::from_utf8(bytes(v)?).map_err(|_| "expected UTF-8 text".to_owned())
}

/// `XREADGROUP`'s reply: nil (nothing new), or per stream its entries (an array of
/// `[name, entries]` pairs in RESP2, a map in RESP3).
fn parse_read_reply(v: Value) -> Result<Vec<Entry>, Trouble> {
    let per_stream = match v {
        Value::Nil => return Ok(Vec::new()),
        Value::Map(pairs) => pairs.into_iter().map(|(_, entries)| entries).collect(),
        Value::Array(streams) => streams
            .into_iter()
            .map(|s| match s {
                Value::Array(mut pair) if pair.len() == 2 => Ok(pair.remove(1)),
                other => Err(format!("XREADGROUP: stream reply is {}", kind(&other))),
            })
            .collect::<Result<Vec<_>, _>>()?,
        other => return Err(format!("XREADGROUP: reply is {}", kind(&other))),
    };
    let mut out = Vec::new();
    for entries in per_stream {
        out.extend(parse_entries(entries)?);
    }
    Ok(out)
}

/// `XAUTOCLAIM`'s reply: `[next cursor, entries]` (Redis 7 adds the ids it dropped as
/// deleted, already off the pending list: nothing to do for them).
fn parse_autoclaim_reply(v: Value) -> Result<(String, Vec<Entry>), Trouble> {
    match v {
        Value::Array(items) if items.len() >= 2 => {
            let mut items = items.into_iter();
            let cursor = items.next().map(text).transpose()?.unwrap_or_default();
            let entries = items
                .next()
                .map(parse_entries)
                .transpose()?
                .unwrap_or_default();
            Ok((cursor, entries))
        }
        other => Err(format!("XAUTOCLAIM: reply is {}", kind(&other))),
    }
}

fn parse_entries(v: Value) -> Result<Vec<Entry>, Trouble> {
    let items = match v {
        Value::Nil => return Ok(Vec::new()),
        Value::Array(items) => items,
        other => return Err(format!("stream entries are {}", kind(&other))),
    };
    let mut out = Vec::with_capacity(items.len());
    for item in items {
        match item {
            // Redis 6.2's XAUTOCLAIM: a deleted entry, without its id.
            Value::Nil => {}
            Value::Array(pair) if pair.len() == 2 => {
                let mut pair = pair.into_iter();
                let id = pair.next().map(text).transpose()?.unwrap_or_default();
                let fields = match pair.next() {
                    None | Some(Value::Nil) => None,
                    Some(f) => Some(parse_fields(f)?),
                };
                out.push(Entry { id, fields });
            }
            other => return Err(format!("a stream entry is {}", kind(&other))),
        }
    }
    Ok(out)
}

fn parse_fields(v: Value) -> Result<RawFields, Trouble> {
    match v {
        Value::Array(flat) if flat.len() % 2 == 0 => {
            let mut out = Vec::with_capacity(flat.len() / 2);
            let mut it = flat.into_iter();
            while let (Some(name), Some(value)) = (it.next(), it.next()) {
                out.push((bytes(name)?, bytes(value)?));
            }
            Ok(out)
        }
        Value::Map(pairs) => pairs
            .into_iter()
            .map(|(n, v)| Ok((bytes(n)?, bytes(v)?)))
            .collect(),
        other => Err(format!("entry fields are {}", kind(&other))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(x: &str) -> Value {
        Value::BulkString(x.as_bytes().to_vec())
    }

    fn entry(id: &str, fields: &[&str]) -> Value {
        Value::Array(vec![
            s(id),
            Value::Array(fields.iter().map(|f| s(f)).collect()),
        ])
    }

    fn want(id: &str, fields: &[(&str, &str)]) -> Entry {
        Entry {
            id: id.into(),
            fields: Some(
                fields
                    .iter()
                    .map(|(n, v)| (n.as_bytes().to_vec(), v.as_bytes().to_vec()))
                    .collect(),
            ),
        }
    }

    #[test]
    fn read_reply_resp2_and_resp3() {
        assert_eq!(parse_read_reply(Value::Nil).unwrap(), vec![]);
        let entries = || {
            Value::Array(vec![
                entry("1-0", &["op", "stop", "stmId", "a"]),
                // Deleted while pending (history read).
                Value::Array(vec![s("2-0"), Value::Nil]),
            ])
        };
        let expected = vec![
            want("1-0", &[("op", "stop"), ("stmId", "a")]),
            Entry {
                id: "2-0".into(),
                fields: None,
            },
        ];
        let resp2 = Value::Array(vec![Value::Array(vec![s("p:jobs"), entries()])]);
        assert_eq!(parse_read_reply(resp2).unwrap(), expected);
        let resp3 = Value::Map(vec![(s("p:jobs"), entries())]);
        assert_eq!(parse_read_reply(resp3).unwrap(), expected);
        // Nothing pending: the stream with no entries.
        let empty = Value::Array(vec![Value::Array(vec![s("p:jobs"), Value::Array(vec![])])]);
        assert_eq!(parse_read_reply(empty).unwrap(), vec![]);
    }

    #[test]
    fn autoclaim_reply_6_and_7() {
        let v7 = Value::Array(vec![
            s("0-0"),
            Value::Array(vec![entry("5-1", &["op", "start", "spec", "{}"])]),
            Value::Array(vec![s("4-0")]),
        ]);
        assert_eq!(
            parse_autoclaim_reply(v7).unwrap(),
            (
                "0-0".into(),
                vec![want("5-1", &[("op", "start"), ("spec", "{}")])]
            )
        );
        let v6 = Value::Array(vec![
            s("7-0"),
            Value::Array(vec![Value::Nil, entry("6-0", &["op", "stop"])]),
        ]);
        assert_eq!(
            parse_autoclaim_reply(v6).unwrap(),
            ("7-0".into(), vec![want("6-0", &[("op", "stop")])])
        );
    }

    #[test]
    fn malformed_replies_are_errors_without_content() {
        let secret = "Bearer s3cret";
        let odd = Value::Array(vec![Value::Array(vec![
            s("p:jobs"),
            Value::Array(vec![entry("1-0", &["op", secret, "x"])]),
        ])]);
        let e = parse_read_reply(odd).unwrap_err();
        assert!(!e.contains("s3cret"), "{e}");
        assert!(parse_read_reply(Value::Int(3)).is_err());
        assert!(parse_autoclaim_reply(Value::Array(vec![s("0-0")])).is_err());
        assert!(parse_read_reply(Value::Array(vec![s("x")])).is_err());
    }

    #[test]
    fn default_settings() {
        let s = JobReaderSettings::new("n1", Duration::from_millis(500));
        assert_eq!(s.node, "n1");
        assert_eq!(s.block, Duration::from_secs(1));
        assert_eq!(s.batch, 16);
        assert_eq!(s.claim_every, Duration::from_secs(10));
        assert_eq!(s.claim_idle, Duration::from_secs(30));
        assert_eq!(s.apply_timeout, Duration::from_secs(5));
    }
}
