//! Jobs from Redis (SPEC §6) applied on this node: the [`JobApplier`] the
//! [`JobReader`](crate::cluster::redis::jobs::JobReader) calls, as a message to the
//! [`StreamRegistry`]. A `start` is validated exactly like `PUT /v1/streams/{stmId}` and
//! stored (the cluster then places it on the least-loaded node, as for any stored stream);
//! storing the same spec again is `unchanged`, so a job applied twice changes nothing. A
//! `stop` deletes the stream like `DELETE`.

use actix::prelude::*;

use super::registry::{ApplyJob, StreamRegistry};
use crate::api::problem::Problem;
use crate::cluster::coordinator::BoxFuture;
use crate::cluster::jobs::{Job, JobApplier, JobOutcome};

/// Applies jobs through the node's registry.
pub struct RegistryJobs(pub Addr<StreamRegistry>);

impl JobApplier for RegistryJobs {
    fn apply(&self, job: Job) -> BoxFuture<'_, Result<JobOutcome, Problem>> {
        let registry = self.0.clone();
        Box::pin(async move {
            registry
                .send(ApplyJob(job))
                .await
                .map_err(|e| Problem::unavailable(format!("stream registry unavailable: {e}")))?
        })
    }
}
