//! StreamRegistry: the node's table of streams. It creates, replaces and stops stream
//! supervisors (each on the least-loaded arbiter), follows their state, and answers the API.
//!
//! This is the embedded single-node coordination; the cluster (Redis) coordinator will take
//! over the ownership decisions, while this table stays the node's local view.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use serde::Serialize;
use tokio::sync::oneshot;

use super::arbiters::{ArbiterPool, Placement};
use crate::api::problem::Problem;
use crate::api::spec::{NodeDefaults, StreamRequest, StreamView, WsMode};
use crate::config::PipelineSettings;
use crate::pipeline::messages::StreamState;
use crate::pipeline::stats::{StatsSnapshot, StreamStats};
use crate::pipeline::supervisor::{StateChanged, Stop, StreamExit, StreamSupervisor};

/// What `GET /v1/streams/{stmId}` shows.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StreamStatus {
    pub spec: StreamView,
    pub state: StreamState,
    pub owner: String,
    pub epoch: u64,
    pub stats: StatsSnapshot,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
}

/// What `GET /v1/nodes` shows for this node.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeStatus {
    pub node: String,
    pub address: String,
    pub streams: usize,
    /// Streams per arbiter (one arbiter per core).
    pub arbiter_loads: Vec<usize>,
}

struct Entry {
    view: StreamView,
    supervisor: Addr<StreamSupervisor>,
    instance: u64,
    state: StreamState,
    last_error: Option<String>,
    stats: Arc<StreamStats>,
    exit: Option<oneshot::Receiver<StreamExit>>,
    _placement: Placement,
}

pub struct StreamRegistry {
    node: String,
    address: String,
    settings: Arc<PipelineSettings>,
    defaults: NodeDefaults,
    pool: ArbiterPool,
    streams: BTreeMap<String, Entry>,
    next_instance: u64,
}

impl StreamRegistry {
    pub fn new(
        settings: PipelineSettings,
        defaults: NodeDefaults,
        address: String,
        pool: ArbiterPool,
    ) -> Self {
        Self {
            node: settings.node.clone(),
            address,
            settings: Arc::new(settings),
            defaults,
            pool,
            streams: BTreeMap::new(),
            next_instance: 0,
        }
    }

    fn status(&self, e: &Entry) -> StreamStatus {
        StreamStatus {
            spec: e.view.clone(),
            state: e.state,
            owner: self.node.clone(),
            epoch: 0,
            stats: e.stats.snapshot(),
            last_error: e.last_error.clone(),
        }
    }

    /// Resolves and starts one stream; the caller has decided it may (create vs replace).
    fn start(
        &mut self,
        request: StreamRequest,
        ctx: &mut Context<Self>,
    ) -> Result<StreamStatus, Problem> {
        let (spec, mode) = request.resolve(&self.defaults)?;
        if mode == WsMode::Shared {
            return Err(Problem::bad_request(
                Some("output.wsMode"),
                "wsMode \"shared\" is not implemented yet; use \"per-stream\"",
            ));
        }
        let view = StreamView::from_spec(&spec, mode);
        let stm_id = spec.stm_id.clone();
        self.next_instance += 1;
        let instance = self.next_instance;
        let (tx, rx) = oneshot::channel();
        let supervisor = StreamSupervisor::new(
            spec,
            self.settings.clone(),
            tx,
            Some(ctx.address().recipient()),
        )
        .map_err(|e| Problem::bad_request(Some("output"), e.to_string()))?
        .with_instance(instance);
        let stats = supervisor.stats();
        let (arbiter, placement) = self.pool.pick();
        let addr = StreamSupervisor::start_in_arbiter(&arbiter, move |_| supervisor);
        tracing::info!(stm_id = %stm_id, arbiter = placement.index, "stream started");
        let entry = Entry {
            view,
            supervisor: addr,
            instance,
            state: StreamState::Starting,
            last_error: None,
            stats,
            exit: Some(rx),
            _placement: placement,
        };
        let status = self.status(&entry);
        if let Some(old) = self.streams.insert(stm_id, entry) {
            old.supervisor.do_send(Stop);
        }
        Ok(status)
    }
}

impl Actor for StreamRegistry {
    type Context = Context<Self>;
}

/// Create (`POST`, fails if it exists) or create-or-replace (`PUT`).
#[derive(Message)]
#[rtype(result = "Result<(StreamStatus, bool), Problem>")]
pub struct Upsert {
    pub request: StreamRequest,
    pub replace: bool,
}

impl Handler<Upsert> for StreamRegistry {
    type Result = Result<(StreamStatus, bool), Problem>;

    fn handle(&mut self, msg: Upsert, ctx: &mut Self::Context) -> Self::Result {
        let exists = self.streams.contains_key(&msg.request.stm_id);
        if exists && !msg.replace {
            return Err(Problem::conflict(&msg.request.stm_id));
        }
        self.start(msg.request, ctx).map(|s| (s, !exists))
    }
}

/// Stop a stream (`DELETE`); it leaves the table at once and drains in the background.
#[derive(Message)]
#[rtype(result = "Result<(), Problem>")]
pub struct Remove(pub String);

impl Handler<Remove> for StreamRegistry {
    type Result = Result<(), Problem>;

    fn handle(&mut self, Remove(stm_id): Remove, _: &mut Self::Context) -> Self::Result {
        match self.streams.remove(&stm_id) {
            Some(e) => {
                e.supervisor.do_send(Stop);
                tracing::info!(stm_id = %stm_id, "stream deleted");
                Ok(())
            }
            None => Err(Problem::not_found(&stm_id)),
        }
    }
}

#[derive(Message)]
#[rtype(result = "Vec<StreamStatus>")]
pub struct ListStreams;

impl Handler<ListStreams> for StreamRegistry {
    type Result = MessageResult<ListStreams>;

    fn handle(&mut self, _: ListStreams, _: &mut Self::Context) -> Self::Result {
        MessageResult(self.streams.values().map(|e| self.status(e)).collect())
    }
}

#[derive(Message)]
#[rtype(result = "Option<StreamStatus>")]
pub struct GetStream(pub String);

impl Handler<GetStream> for StreamRegistry {
    type Result = Option<StreamStatus>;

    fn handle(&mut self, GetStream(id): GetStream, _: &mut Self::Context) -> Self::Result {
        self.streams.get(&id).map(|e| self.status(e))
    }
}

#[derive(Message)]
#[rtype(result = "NodeStatus")]
pub struct GetNode;

impl Handler<GetNode> for StreamRegistry {
    type Result = MessageResult<GetNode>;

    fn handle(&mut self, _: GetNode, _: &mut Self::Context) -> Self::Result {
        MessageResult(NodeStatus {
            node: self.node.clone(),
            address: self.address.clone(),
            streams: self.streams.len(),
            arbiter_loads: self.pool.loads(),
        })
    }
}

impl Handler<StateChanged> for StreamRegistry {
    type Result = ();

    fn handle(&mut self, msg: StateChanged, _: &mut Self::Context) {
        if let Some(e) = self.streams.get_mut(&msg.stm_id) {
            if e.instance == msg.instance {
                e.state = msg.state;
                e.last_error = msg.error;
            }
        }
    }
}

/// Graceful shutdown: stop every stream (WHEP DELETE, flush, WS close), wait for them at
/// most `grace`, then stop the arbiters.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Shutdown {
    pub grace: Duration,
}

impl Handler<Shutdown> for StreamRegistry {
    type Result = ResponseActFuture<Self, ()>;

    fn handle(&mut self, msg: Shutdown, _: &mut Self::Context) -> Self::Result {
        let exits: Vec<_> = self
            .streams
            .values_mut()
            .filter_map(|e| {
                e.supervisor.do_send(Stop);
                e.exit.take()
            })
            .collect();
        let n = exits.len();
        tracing::info!(streams = n, "stopping all streams");
        Box::pin(
            async move {
                let all = futures_util::future::join_all(exits);
                if tokio::time::timeout(msg.grace, all).await.is_err() {
                    tracing::warn!(grace = ?msg.grace, "some streams did not stop within the grace period");
                }
            }
            .into_actor(self)
            .map(|_, act, _| {
                act.streams.clear();
                act.pool.stop();
            }),
        )
    }
}
