//! Redis-driven jobs (SPEC §6): the plain core. Besides the HTTP API, other systems submit
//! work through Redis itself, as entries of one Redis Stream that the nodes read through a
//! consumer group ([`crate::cluster::redis::jobs`] does the I/O; this module decides).
//!
//! # Submitting a job
//!
//! ```text
//! XADD <prefix>:jobs * op start spec '<stream spec JSON>'
//! XADD <prefix>:jobs * op stop stmId <stmId>
//! ```
//!
//! - `start`: `spec` is exactly the body of `POST /v1/streams` (at most 64 KiB), validated by
//!   the same code ([`parse_stream_request`]), so a job is refused for exactly the reasons a
//!   request would be. It is applied with `PUT` semantics (create, or replace the stored spec
//!   of that `stmId`): re-applying the same job changes nothing (outcome `unchanged`).
//! - `stop`: `stmId` as in `DELETE /v1/streams/{stmId}`. Stopping a stream that does not exist
//!   is accepted (outcome `absent`), so a repeated stop is harmless too.
//! - Any other `op`, a missing field, a field not listed for the op or given twice, or a
//!   value that is not UTF-8 rejects the job with a problem naming that field.
//!
//! Jobs are idempotent by `stmId`, so the at-least-once delivery of a consumer group (a job
//! reclaimed from a node that died mid-way is applied again) still applies it once in effect.
//! Jobs are **not** ordered across nodes: two jobs for one `stmId` may be applied by two
//! nodes in either order, so a producer that needs "start, then stop" waits for the first
//! job's result before sending the second.
//!
//! # Reading the result
//!
//! Each job gets one result, a JSON object ([`result_json`]), written where the producer can
//! read it: under `<prefix>:job:<entryId>` for 24 h (`GET`, with the id `XADD` returned), and
//! as an entry `jobId <entryId> result <json>` of the stream `<prefix>:job-results` (capped
//! near 10 000 entries; `XREAD BLOCK` on it to wait).
//!
//! ```json
//! {"jobId":"1700000000000-0","node":"n1","op":"start","stmId":"cam1","status":"accepted","outcome":"created"}
//! {"jobId":"1700000000001-0","node":"n1","op":"start","status":"rejected",
//!  "problem":{"type":"urn:whep-bridge:problem:invalid-request","title":"Invalid request",
//!             "status":400,"detail":"unknown field ...","field":"bogus"}}
//! ```
//!
//! `problem` is the RFC 9457 object the HTTP API would have answered. A job that failed
//! because the cluster could not be reached (a 503 problem, [`is_retryable`]) gets no result
//! and stays pending in the group: it is applied again later, by this node or another.

use serde::Serialize;
use serde_json::Value;

use super::coordinator::{BoxFuture, Put};
use crate::api::problem::{truncate, Problem};
use crate::api::spec::{check, parse_stream_request, StreamRequest};

/// Largest `spec` a `start` job may carry: the API's body cap.
pub const MAX_SPEC_BYTES: usize = 64 * 1024;

/// One job, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Job {
    /// Create or replace a stream (`PUT /v1/streams/{stmId}`).
    Start(StreamRequest),
    /// Delete a stream (`DELETE /v1/streams/{stmId}`).
    Stop { stm_id: String },
}

impl Job {
    /// The `op` field that submits this job.
    pub fn op(&self) -> &'static str {
        match self {
            Job::Start(_) => "start",
            Job::Stop { .. } => "stop",
        }
    }

    /// The stream the job is about.
    pub fn stm_id(&self) -> &str {
        match self {
            Job::Start(request) => &request.stm_id,
            Job::Stop { stm_id } => stm_id,
        }
    }
}

/// What applying a job did (the result's `outcome`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobOutcome {
    /// `start`: the stream did not exist and was created.
    Created,
    /// `start`: the stream existed with another spec, now replaced.
    Replaced,
    /// `start`: the same spec was stored already (e.g. the job was applied before).
    Unchanged,
    /// `stop`: the stream existed and was deleted.
    Stopped,
    /// `stop`: no such stream (never created, or already stopped).
    Absent,
}

impl JobOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            JobOutcome::Created => "created",
            JobOutcome::Replaced => "replaced",
            JobOutcome::Unchanged => "unchanged",
            JobOutcome::Stopped => "stopped",
            JobOutcome::Absent => "absent",
        }
    }

    /// The outcome of a `start` stored with [`Coordinator::put_stream`]`(request, true)`
    /// (`Exists` only arises without `replace`; nothing changed then either).
    ///
    /// [`Coordinator::put_stream`]: super::coordinator::Coordinator::put_stream
    pub fn from_put(put: Put) -> Self {
        match put {
            Put::Created => JobOutcome::Created,
            Put::Replaced => JobOutcome::Replaced,
            Put::Unchanged | Put::Exists => JobOutcome::Unchanged,
        }
    }

    /// The outcome of a `stop` from [`Coordinator::remove_stream`]'s answer.
    ///
    /// [`Coordinator::remove_stream`]: super::coordinator::Coordinator::remove_stream
    pub fn from_removed(existed: bool) -> Self {
        if existed {
            JobOutcome::Stopped
        } else {
            JobOutcome::Absent
        }
    }
}

/// Applies validated jobs on a node (stores the spec in the coordinator, deletes it, …).
/// Must be idempotent by `stmId`: a job may be applied more than once (see the module doc).
pub trait JobApplier: Send + Sync + 'static {
    /// Applies `job`. A problem with status 503 means "not now" (the cluster is unreachable,
    /// the node is draining): the job is retried later. Any other problem is final.
    fn apply(&self, job: Job) -> BoxFuture<'_, Result<JobOutcome, Problem>>;
}

/// Whether a failed apply should be retried later rather than reported: 503 problems only.
pub fn is_retryable(problem: &Problem) -> bool {
    problem.status == 503
}

/// The fields each op takes, all required.
const START_FIELDS: &[&str] = &["op", "spec"];
const STOP_FIELDS: &[&str] = &["op", "stmId"];

/// Validates one stream entry's fields into a [`Job`], or a problem naming the field at
/// fault (the spec's own problems name the spec field, exactly as the API does).
pub fn parse_job(fields: &[(String, String)]) -> Result<Job, Problem> {
    for (i, (name, _)) in fields.iter().enumerate() {
        if fields[..i].iter().any(|(seen, _)| seen == name) {
            return Err(Problem::bad_request(
                Some(name),
                "field given more than once in the job entry",
            ));
        }
    }
    let get = |name: &str| {
        fields
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    };
    let op = get("op").ok_or_else(|| missing("op"))?;
    let allowed = match op {
        "start" => START_FIELDS,
        "stop" => STOP_FIELDS,
        other => {
            return Err(Problem::bad_request(
                Some("op"),
                format!(
                    "unknown op {:?} (expected one of: start, stop)",
                    truncate(other, 32)
                ),
            ))
        }
    };
    if let Some((unknown, _)) = fields.iter().find(|(n, _)| !allowed.contains(&n.as_str())) {
        return Err(Problem::bad_request(
            Some(unknown),
            format!(
                "unknown field {:?} for op {op} (expected: {})",
                truncate(unknown, 64),
                allowed.join(", ")
            ),
        ));
    }
    let required = |name: &str| get(name).ok_or_else(|| missing(name));
    match op {
        "start" => {
            let spec = required("spec")?;
            if spec.len() > MAX_SPEC_BYTES {
                let mut p = Problem::payload_too_large(MAX_SPEC_BYTES);
                p.field = Some("spec".to_owned());
                return Err(p);
            }
            parse_stream_request(spec.as_bytes(), None).map(Job::Start)
        }
        _ => {
            let stm_id = required("stmId")?;
            check::check_id(stm_id).map_err(|m| Problem::bad_request(Some("stmId"), m))?;
            Ok(Job::Stop {
                stm_id: stm_id.to_owned(),
            })
        }
    }
}

fn missing(field: &str) -> Problem {
    Problem::bad_request(Some(field), "missing required field")
}

/// An entry's raw fields as text; a name or value that is not UTF-8 is a problem on that
/// field (its name shown lossily).
pub fn fields_from_bytes(raw: Vec<(Vec<u8>, Vec<u8>)>) -> Result<Vec<(String, String)>, Problem> {
    raw.into_iter()
        .map(|(name, value)| {
            let name = String::from_utf8(name).map_err(|e| {
                let lossy = String::from_utf8_lossy(e.as_bytes()).into_owned();
                Problem::bad_request(Some(&lossy), "field name is not valid UTF-8")
            })?;
            let value = String::from_utf8(value)
                .map_err(|_| Problem::bad_request(Some(&name), "value is not valid UTF-8"))?;
            Ok((name, value))
        })
        .collect()
}

/// The `op` and `stmId` of an entry [`parse_job`] refused, as far as they can be told, for
/// its result and log line. Only well-formed values are returned (a known op, an id that
/// passes the id check), so nothing arbitrary is echoed.
pub fn labels(fields: &[(String, String)]) -> (Option<&'static str>, Option<String>) {
    let get = |name: &str| fields.iter().find(|(n, _)| n == name).map(|(_, v)| v);
    let op = match get("op").map(String::as_str) {
        Some("start") => Some("start"),
        Some("stop") => Some("stop"),
        _ => None,
    };
    let stm_id = match op {
        Some("start") => get("spec")
            .filter(|s| s.len() <= MAX_SPEC_BYTES)
            .and_then(|s| serde_json::from_str::<Value>(s).ok())
            .and_then(|v| v.get("stmId").and_then(Value::as_str).map(str::to_owned)),
        Some(_) => get("stmId").cloned(),
        None => None,
    };
    (op, stm_id.filter(|id| check::check_id(id).is_ok()))
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ResultDoc<'a> {
    job_id: &'a str,
    node: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    op: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    stm_id: Option<&'a str>,
    status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    outcome: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    problem: Option<&'a Problem>,
}

/// The result of job `job_id` as applied (or refused) by `node`: compact JSON, see the
/// module doc. `op`/`stmId` are omitted when unknown (an entry too malformed to tell).
pub fn result_json(
    job_id: &str,
    node: &str,
    op: Option<&str>,
    stm_id: Option<&str>,
    result: &Result<JobOutcome, Problem>,
) -> String {
    let (status, outcome, problem) = match result {
        Ok(outcome) => ("accepted", Some(outcome.as_str()), None),
        Err(problem) => ("rejected", None, Some(problem)),
    };
    let doc = ResultDoc {
        job_id,
        node,
        op,
        stm_id,
        status,
        outcome,
        problem,
    };
    // A struct of strings and a Problem always serializes; keep a valid document anyway.
    serde_json::to_string(&doc).unwrap_or_else(|_| {
        serde_json::json!({"jobId": job_id, "node": node, "status": status}).to_string()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const SPEC: &str = r#"{"stmId":"cam1","whepUrl":"http://127.0.0.1:1985/whep/cam1"}"#;

    fn f(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect()
    }

    fn field_of(pairs: &[(&str, &str)]) -> (u16, Option<String>) {
        let p = parse_job(&f(pairs)).unwrap_err();
        (p.status, p.field)
    }

    #[test]
    fn good_start_is_the_api_request() {
        let job = parse_job(&f(&[("op", "start"), ("spec", SPEC)])).unwrap();
        assert_eq!(
            job,
            Job::Start(parse_stream_request(SPEC.as_bytes(), None).unwrap())
        );
        assert_eq!((job.op(), job.stm_id()), ("start", "cam1"));
        // Field order does not matter.
        assert_eq!(
            parse_job(&f(&[("spec", SPEC), ("op", "start")])).unwrap(),
            job
        );
    }

    #[test]
    fn good_stop() {
        let job = parse_job(&f(&[("op", "stop"), ("stmId", "cam:1.a_b-c")])).unwrap();
        assert_eq!(
            job,
            Job::Stop {
                stm_id: "cam:1.a_b-c".into()
            }
        );
        assert_eq!((job.op(), job.stm_id()), ("stop", "cam:1.a_b-c"));
    }

    #[test]
    fn entry_level_problems_name_the_field() {
        let bad = |field: &str| (400, Some(field.to_owned()));
        assert_eq!(field_of(&[("spec", SPEC)]), bad("op"));
        assert_eq!(field_of(&[("op", "restart"), ("spec", SPEC)]), bad("op"));
        assert_eq!(field_of(&[("op", "start")]), bad("spec"));
        assert_eq!(field_of(&[("op", "stop")]), bad("stmId"));
        assert_eq!(
            field_of(&[("op", "start"), ("spec", SPEC), ("prio", "1")]),
            bad("prio")
        );
        // A field of the other op is unknown too.
        assert_eq!(
            field_of(&[("op", "stop"), ("stmId", "a"), ("spec", SPEC)]),
            bad("spec")
        );
        assert_eq!(
            field_of(&[("op", "start"), ("spec", SPEC), ("spec", SPEC)]),
            bad("spec")
        );
        assert_eq!(field_of(&[("op", "stop"), ("stmId", "a b")]), bad("stmId"));
        assert_eq!(field_of(&[("op", "stop"), ("stmId", "")]), bad("stmId"));
        let p = parse_job(&f(&[("op", "restart")])).unwrap_err();
        assert!(p.detail.contains("start, stop"), "{p}");
    }

    #[test]
    fn spec_problems_are_the_apis() {
        for (spec, field) in [
            (
                r#"{"stmId":"a","whepUrl":"http://h/w","bogus":1}"#,
                Some("bogus"),
            ),
            (r#"{"whepUrl":"http://h/w"}"#, Some("stmId")),
            (r#"{"stmId":"a","whepUrl":"ftp://h/w"}"#, Some("whepUrl")),
            (
                r#"{"stmId":"a","whepUrl":"http://h/w","output":{"chunkMs":"x"}}"#,
                Some("output.chunkMs"),
            ),
            (r#"{"stmId":"a""#, None),
            ("", None),
        ] {
            let job = parse_job(&f(&[("op", "start"), ("spec", spec)])).unwrap_err();
            let api = parse_stream_request(spec.as_bytes(), None).unwrap_err();
            assert_eq!(job, api, "{spec}");
            assert_eq!(job.field.as_deref(), field, "{spec}");
        }
    }

    #[test]
    fn spec_capped_at_64_kib() {
        let pad = " ".repeat(MAX_SPEC_BYTES + 1 - SPEC.len());
        let big = format!("{SPEC}{pad}");
        let p = parse_job(&f(&[("op", "start"), ("spec", &big)])).unwrap_err();
        assert_eq!((p.status, p.field.as_deref()), (413, Some("spec")));
        // Right at the cap it is parsed (trailing whitespace is valid JSON).
        let at_cap = &big[..MAX_SPEC_BYTES];
        assert!(parse_job(&f(&[("op", "start"), ("spec", at_cap)])).is_ok());
    }

    #[test]
    fn non_utf8_names_the_field() {
        let ok = fields_from_bytes(vec![(b"op".to_vec(), b"stop".to_vec())]).unwrap();
        assert_eq!(ok, f(&[("op", "stop")]));
        let p = fields_from_bytes(vec![(b"stmId".to_vec(), vec![0xff, 0x41])]).unwrap_err();
        assert_eq!(p.field.as_deref(), Some("stmId"));
        let p = fields_from_bytes(vec![(vec![b'x', 0xfe], b"1".to_vec())]).unwrap_err();
        assert_eq!(p.field.as_deref(), Some("x\u{fffd}"));
    }

    #[test]
    fn labels_only_echo_well_formed_values() {
        let bad_spec = r#"{"stmId":"cam1","whepUrl":"http://h/w","bogus":1}"#;
        assert_eq!(
            labels(&f(&[("op", "start"), ("spec", bad_spec)])),
            (Some("start"), Some("cam1".into()))
        );
        assert_eq!(
            labels(&f(&[("op", "stop"), ("stmId", "cam2"), ("x", "y")])),
            (Some("stop"), Some("cam2".into()))
        );
        assert_eq!(labels(&f(&[("op", "stop"), ("stmId", "a b")])).1, None);
        assert_eq!(labels(&f(&[("op", "start"), ("spec", "{")])).1, None);
        assert_eq!(labels(&f(&[("op", "nope"), ("stmId", "a")])), (None, None));
    }

    #[test]
    fn accepted_result_json() {
        let json = result_json(
            "1700000000000-0",
            "n1",
            Some("start"),
            Some("cam1"),
            &Ok(JobOutcome::Created),
        );
        assert_eq!(
            json,
            r#"{"jobId":"1700000000000-0","node":"n1","op":"start","stmId":"cam1","status":"accepted","outcome":"created"}"#
        );
    }

    #[test]
    fn rejected_result_json_embeds_the_problem() {
        let problem = Problem::bad_request(Some("bogus"), "unknown field");
        let json = result_json("1-0", "n2", None, None, &Err(problem.clone()));
        let v: Value = serde_json::from_str(&json).unwrap();
        assert_eq!(v["jobId"], "1-0");
        assert_eq!(v["node"], "n2");
        assert_eq!(v["status"], "rejected");
        assert!(v.get("op").is_none() && v.get("stmId").is_none() && v.get("outcome").is_none());
        let expected: Value = serde_json::from_str(&problem.to_json()).unwrap();
        assert_eq!(v["problem"], expected);
        assert_eq!(v["problem"]["field"], "bogus");
    }

    #[test]
    fn outcomes() {
        let all = [
            (JobOutcome::Created, "created"),
            (JobOutcome::Replaced, "replaced"),
            (JobOutcome::Unchanged, "unchanged"),
            (JobOutcome::Stopped, "stopped"),
            (JobOutcome::Absent, "absent"),
        ];
        for (o, s) in all {
            assert_eq!(o.as_str(), s);
        }
        assert_eq!(JobOutcome::from_put(Put::Created), JobOutcome::Created);
        assert_eq!(JobOutcome::from_put(Put::Replaced), JobOutcome::Replaced);
        assert_eq!(JobOutcome::from_put(Put::Unchanged), JobOutcome::Unchanged);
        assert_eq!(JobOutcome::from_put(Put::Exists), JobOutcome::Unchanged);
        assert_eq!(JobOutcome::from_removed(true), JobOutcome::Stopped);
        assert_eq!(JobOutcome::from_removed(false), JobOutcome::Absent);
    }

    #[test]
    fn only_503_is_retried() {
        assert!(is_retryable(&Problem::unavailable("redis down")));
        assert!(is_retryable(&Problem::draining()));
        assert!(!is_retryable(&Problem::bad_request(None, "x")));
        assert!(!is_retryable(&Problem::internal("x")));
        assert!(!is_retryable(&Problem::conflict("a")));
    }
}
