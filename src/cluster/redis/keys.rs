//! The Redis key layout of one deployment (SPEC §6). Every key starts with a configurable
//! prefix, so several deployments can share one Redis.
//!
//! | key | type | holds |
//! |---|---|---|
//! | `{p}:streams` | hash | `stmId` → stream spec (the API request JSON) |
//! | `{p}:lease:{stmId}` | hash, `PEXPIRE` TTL | `node`, `epoch` of the current owner |
//! | `{p}:epoch:{stmId}` | string counter | last epoch handed out (survives releases) |
//! | `{p}:nodes` | set | node ids that have sent a heartbeat |
//! | `{p}:node:{id}` | string, `PEXPIRE` | the node's heartbeat (JSON: address, load) |
//! | `{p}:cooldowns` | hash | `stmId` → `{"fails":n,"nodes":{node: until ms}}`: who handed it over |
//! | `{p}:events` | pub/sub channel | `put <stmId>`, `del <stmId>`, `released <stmId>` |
//! | `{p}:jobs` | stream, group [`JOBS_GROUP`] | jobs from producers: `op start spec <json>`, `op stop stmId <id>` |
//! | `{p}:job:{entryId}` | string, `EX` 24 h | the job's result JSON (accepted, or the problem) |
//! | `{p}:job-results` | stream, `MAXLEN ~ 10000` | `jobId <entryId> result <json>`, one per job |

/// The consumer group every node reads `{p}:jobs` in: one group, so each job goes to one node.
pub const JOBS_GROUP: &str = "whep-bridge";

/// Key names for one prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Keys {
    prefix: String,
}

impl Keys {
    pub fn new(prefix: &str) -> Self {
        Self {
            prefix: prefix.trim_end_matches(':').to_owned(),
        }
    }

    pub fn streams(&self) -> String {
        format!("{}:streams", self.prefix)
    }

    pub fn lease(&self, stm_id: &str) -> String {
        format!("{}{stm_id}", self.lease_prefix())
    }

    /// What every lease key starts with.
    pub fn lease_prefix(&self) -> String {
        format!("{}:lease:", self.prefix)
    }

    pub fn epoch(&self, stm_id: &str) -> String {
        format!("{}:epoch:{stm_id}", self.prefix)
    }

    pub fn nodes(&self) -> String {
        format!("{}:nodes", self.prefix)
    }

    pub fn node(&self, node: &str) -> String {
        format!("{}:node:{node}", self.prefix)
    }

    pub fn cooldowns(&self) -> String {
        format!("{}:cooldowns", self.prefix)
    }

    pub fn events(&self) -> String {
        format!("{}:events", self.prefix)
    }

    /// The stream producers add jobs to (see [`crate::cluster::jobs`]).
    pub fn jobs(&self) -> String {
        format!("{}:jobs", self.prefix)
    }

    /// Where the result of job `job_id` (its entry id in [`Keys::jobs`]) is kept.
    pub fn job_result(&self, job_id: &str) -> String {
        format!("{}:job:{job_id}", self.prefix)
    }

    /// The stream every job result is also appended to, for producers that wait on it.
    pub fn job_results(&self) -> String {
        format!("{}:job-results", self.prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_key_carries_the_prefix_once() {
        let k = Keys::new("prod-eu:");
        assert_eq!(k.streams(), "prod-eu:streams");
        assert_eq!(k.lease("cam:1"), "prod-eu:lease:cam:1");
        assert_eq!(k.epoch("cam:1"), "prod-eu:epoch:cam:1");
        assert_eq!(k.nodes(), "prod-eu:nodes");
        assert_eq!(k.node("n1"), "prod-eu:node:n1");
        assert_eq!(k.events(), "prod-eu:events");
        assert_eq!(k.cooldowns(), "prod-eu:cooldowns");
        assert_eq!(k.jobs(), "prod-eu:jobs");
        assert_eq!(
            k.job_result("1700000000000-0"),
            "prod-eu:job:1700000000000-0"
        );
        assert_eq!(k.job_results(), "prod-eu:job-results");
        // A result key can never be mistaken for the jobs stream or the results stream.
        assert_ne!(k.job_result("s"), k.jobs());
        assert_ne!(k.job_result("-results"), k.job_results());
        // Two deployments never share a key.
        assert_ne!(Keys::new("a").lease("s"), Keys::new("b").lease("s"));
    }
}
