//! The Coordinator trait: what a node needs from the cluster (SPEC §6).
//!
//! The node's [`StreamRegistry`](crate::node::registry::StreamRegistry) never decides alone
//! which streams exist or who runs them; it asks a coordinator. [`EmbeddedCoordinator`]
//! answers from memory for a single node (no Redis needed: `serve` and `demo` on their own);
//! the Redis coordinator implements the same trait for a cluster, so the registry, the API
//! and the pipeline do not change between the two.
//!
//! Methods return boxed futures (the trait is used as `Arc<dyn Coordinator>`, and a network
//! coordinator's calls are real I/O). Every call may fail with [`CoordError`]: callers keep
//! running what they run and retry, and the API answers 503.
//!
//! [`EmbeddedCoordinator`]: super::embedded::EmbeddedCoordinator

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use std::collections::BTreeMap;

use tokio::sync::Notify;

use serde::{Deserialize, Serialize};

use super::handover::{Cooling, HandoverPolicy};
use super::lease::Lease;
use crate::api::spec::StreamRequest;
use crate::pipeline::messages::StreamState;

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The coordinator could not answer (e.g. Redis unreachable).
#[derive(Debug, Clone, thiserror::Error)]
#[error("coordinator unavailable: {0}")]
pub struct CoordError(pub String);

/// What [`Coordinator::put_stream`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Put {
    Created,
    Replaced,
    /// `replace` was false and the stream exists: nothing changed.
    Exists,
    /// `replace` was true and the stored spec is the same: nothing changed (idempotent).
    Unchanged,
}

/// A node as the cluster sees it (`GET /v1/nodes`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeInfo {
    pub node: String,
    /// Where its HTTP API listens.
    pub address: String,
    /// Streams it runs.
    pub streams: usize,
    /// Streams per arbiter (one arbiter per core).
    pub arbiter_loads: Vec<usize>,
    /// The state of each stream it runs (as of this heartbeat), for the cluster-wide
    /// `GET /v1/streams` on any node.
    #[serde(default)]
    pub stream_states: BTreeMap<String, StreamState>,
}

pub trait Coordinator: Send + Sync + 'static {
    /// Stores a stream spec (create, or create-or-replace when `replace`).
    fn put_stream<'a>(
        &'a self,
        request: &'a StreamRequest,
        replace: bool,
    ) -> BoxFuture<'a, Result<Put, CoordError>>;

    /// Deletes a stream spec (its owner stops it); `false` if it did not exist.
    fn remove_stream<'a>(&'a self, stm_id: &'a str) -> BoxFuture<'a, Result<bool, CoordError>>;

    /// Every stored spec.
    fn streams(&self) -> BoxFuture<'_, Result<Vec<StreamRequest>, CoordError>>;

    /// The ids of stored streams nobody holds a lease on, sorted.
    fn orphans(&self) -> BoxFuture<'_, Result<Vec<String>, CoordError>>;

    /// `node` asks to run `stm_id`: a lease with a new epoch, or `None` if another node holds it.
    fn acquire<'a>(
        &'a self,
        stm_id: &'a str,
        node: &'a str,
    ) -> BoxFuture<'a, Result<Option<Lease>, CoordError>>;

    /// Who holds `stm_id`'s lease now, if anyone.
    fn owner<'a>(&'a self, stm_id: &'a str) -> BoxFuture<'a, Result<Option<Lease>, CoordError>>;

    /// Renews leases; returns the ones that are lost (their streams must stop at once).
    fn renew<'a>(&'a self, leases: &'a [Lease]) -> BoxFuture<'a, Result<Vec<Lease>, CoordError>>;

    /// Gives a lease up (stopped, or handing the stream to another node).
    fn release<'a>(&'a self, lease: &'a Lease) -> BoxFuture<'a, Result<(), CoordError>>;

    /// Gives up a stream local retries cannot fix: releases the lease (if still `lease`) and
    /// starts this node's cooldown for it (see [`HandoverPolicy`]). Returns the cooldown, or
    /// `None` when the lease was no longer this one.
    fn hand_over<'a>(
        &'a self,
        lease: &'a Lease,
        policy: &'a HandoverPolicy,
    ) -> BoxFuture<'a, Result<Option<Duration>, CoordError>>;

    /// Which nodes are cooling down for which streams now.
    fn cooling(&self) -> BoxFuture<'_, Result<Cooling, CoordError>>;

    /// This node is alive, with its load.
    fn heartbeat<'a>(&'a self, node: &'a NodeInfo) -> BoxFuture<'a, Result<(), CoordError>>;

    /// `node` leaves (draining): it is no longer listed, so the others stop counting it when
    /// they place the streams it hands over.
    fn leave<'a>(&'a self, node: &'a str) -> BoxFuture<'a, Result<(), CoordError>>;

    /// The live nodes.
    fn nodes(&self) -> BoxFuture<'_, Result<Vec<NodeInfo>, CoordError>>;

    /// How long a lease lives without renewal.
    fn lease_ttl(&self) -> Duration;

    /// Can another process deliver this node's streams (a cluster)? Then delivery is fenced
    /// by the lease deadline.
    fn is_shared(&self) -> bool {
        true
    }

    /// The longest a single call may take before it fails (0 for in-memory coordinators).
    fn call_timeout(&self) -> Duration {
        Duration::ZERO
    }

    /// Wakes `notify` whenever the cluster changed (a spec stored or deleted, a lease
    /// released), so the node claims at once instead of on its next tick. A no-op where this
    /// node is the only one that can change anything (embedded).
    fn watch(&self, notify: Arc<Notify>) {
        let _ = notify;
    }
}
