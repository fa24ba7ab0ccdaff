//! StreamRegistry: the node's table of streams. It creates, replaces and stops stream
//! supervisors (each on the least-loaded arbiter), follows their state, and answers the API.
//!
//! Which streams exist and who runs them is the [`Coordinator`]'s call: the registry stores
//! a spec there first, runs a stream only under a lease (whose epoch the stream stamps on its
//! envelopes), renews its leases every second and stops at once a stream whose lease is lost.
//! A node on its own uses the in-memory [`EmbeddedCoordinator`]; a cluster, Redis.
//!
//! Input is validated (and the pipeline built) before the coordinator is asked, so bad input
//! changes nothing anywhere. Handlers that talk to the coordinator are atomic (the registry
//! handles nothing else meanwhile), so two requests for one `stmId` cannot interleave.
//!
//! This file holds the table, starting/stopping runs and the commands (create, replace,
//! delete, state reports, shutdown); [`coordination`] the cluster round, fencing and
//! hand-overs; [`queries`] the read-only messages; [`links`] shared consumer connections;
//! [`status`] what a stream looks like from outside.

mod coordination;
mod links;
mod queries;
mod status;

pub use queries::{
    GetListen, GetNode, GetStream, ListCluster, ListNodes, ListStreams, ListenSource, Locate,
};
pub use status::{Elsewhere, StreamStatus};

use coordination::ClusterChanged;
use links::SharedLink;

use std::collections::BTreeMap;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::cluster::claim::is_least_loaded;
use crate::cluster::fence::{DeliveryGate, FenceClock};
use crate::cluster::handover::{HandoverPolicy, Health};
use crate::cluster::jobs::{Job, JobOutcome};
use crate::cluster::{Coordinator, EmbeddedCoordinator, Lease, NodeInfo, Put};

use actix::prelude::*;
use tokio::sync::{oneshot, Notify};

use super::arbiters::{ArbiterPool, Placement};
use crate::api::problem::Problem;
use crate::api::spec::{NodeDefaults, StreamRequest, StreamView, WsMode};
use crate::config::{EnvelopeKind, PipelineSettings};
use crate::output::link::{LinkConfig, Retire};
use crate::pipeline::messages::StreamState;
use crate::pipeline::stats::StreamStats;
use crate::pipeline::supervisor::{StateChanged, Stop, StreamExit, StreamSupervisor};

/// How often leases are renewed and the node's heartbeat is sent (SPEC §6: TTL 3 s).
const RENEW_EVERY: Duration = Duration::from_secs(1);

struct Entry {
    lease: Lease,
    /// The spec this run was started from (a different stored spec restarts it).
    request: StreamRequest,
    view: StreamView,
    supervisor: Addr<StreamSupervisor>,
    instance: u64,
    state: StreamState,
    last_error: Option<String>,
    stats: Arc<StreamStats>,
    exit: Option<oneshot::Receiver<StreamExit>>,
    /// `wsMode: shared`: the key of the node link this stream sends on.
    link_key: Option<String>,
    /// Since when the stream is not live or its consumer not connected.
    health: Health,
    _placement: Placement,
}

impl Entry {
    fn healthy(&self) -> bool {
        self.state == StreamState::Live && self.stats.consumer_connected.load(Relaxed)
    }
}

/// A validated request with its pipeline built, not yet stored or started.
struct Prepared {
    request: StreamRequest,
    view: StreamView,
    link: Option<LinkConfig>,
    supervisor: StreamSupervisor,
    instance: u64,
    exit: oneshot::Receiver<StreamExit>,
}

pub struct StreamRegistry {
    coord: Arc<dyn Coordinator>,
    node: String,
    address: String,
    settings: Arc<PipelineSettings>,
    defaults: NodeDefaults,
    pool: ArbiterPool,
    streams: BTreeMap<String, Entry>,
    links: BTreeMap<String, SharedLink>,
    next_instance: u64,
    /// A coordinator tick is in flight.
    ticking: bool,
    /// A change arrived during that tick: run another one right after it.
    tick_again: bool,
    /// Shutting down: keep renewing what drains, claim and accept nothing new.
    draining: bool,
    /// Self-fencing and the post-outage claim pause.
    fence: FenceClock,
    /// The deadline the forwarders check (see [`DeliveryGate`]).
    gate: Arc<DeliveryGate>,
    /// When a failing stream goes to another node.
    handover: HandoverPolicy,
}

/// How often the registry checks whether delivery must be held.
const FENCE_CHECK_EVERY: Duration = Duration::from_millis(200);

impl StreamRegistry {
    pub fn new(
        settings: PipelineSettings,
        defaults: NodeDefaults,
        address: String,
        pool: ArbiterPool,
    ) -> Self {
        let coord: Arc<dyn Coordinator> = Arc::new(EmbeddedCoordinator::default());
        Self {
            fence: Self::fence_for(coord.as_ref()),
            gate: Self::gate_for(coord.as_ref()),
            handover: HandoverPolicy::default(),
            coord,
            node: settings.node.clone(),
            address,
            settings: Arc::new(settings),
            defaults,
            pool,
            streams: BTreeMap::new(),
            links: BTreeMap::new(),
            next_instance: 0,
            ticking: false,
            tick_again: false,
            draining: false,
        }
    }

    fn status(&self, e: &Entry) -> StreamStatus {
        // Not recovered by local retries and (still) here: no other node could take it.
        let stuck = e.health.is_failing(&self.handover, Instant::now());
        StreamStatus {
            spec: e.view.clone(),
            state: if stuck { StreamState::Failing } else { e.state },
            owner: e.lease.node.clone(),
            epoch: e.lease.epoch,
            stats: e.stats.snapshot(),
            last_error: e.last_error.clone().or_else(|| e.stats.consumer_error()),
        }
    }

    /// Uses `coord` instead of the embedded coordinator (a cluster).
    pub fn with_coordinator(mut self, coord: Arc<dyn Coordinator>) -> Self {
        self.fence = Self::fence_for(coord.as_ref());
        self.gate = Self::gate_for(coord.as_ref());
        self.coord = coord;
        self
    }

    /// When failing streams move to another node (a cluster).
    pub fn with_handover(mut self, policy: HandoverPolicy) -> Self {
        self.handover = policy;
        self
    }

    fn gate_for(coord: &dyn Coordinator) -> Arc<DeliveryGate> {
        Arc::new(if coord.is_shared() {
            DeliveryGate::closed()
        } else {
            DeliveryGate::always_open()
        })
    }

    /// Moves the forwarders' deadline to what the fence clock allows now.
    fn update_gate(&self) {
        if let Some(until) = self.fence.deliver_until() {
            self.gate.open_until(until);
        }
    }

    fn fence_for(coord: &dyn Coordinator) -> FenceClock {
        let ttl = coord.lease_ttl();
        FenceClock::new(ttl, FenceClock::margin_for(ttl, coord.call_timeout()))
    }

    fn node_info(&self) -> NodeInfo {
        NodeInfo {
            node: self.node.clone(),
            address: self.address.clone(),
            streams: self.streams.len(),
            arbiter_loads: self.pool.loads(),
            stream_states: self
                .streams
                .iter()
                .map(|(id, e)| (id.clone(), e.state))
                .collect(),
        }
    }

    /// Validates the request and builds its pipeline; nothing is stored or started yet.
    fn prepare(
        &mut self,
        request: StreamRequest,
        ctx: &mut Context<Self>,
    ) -> Result<Prepared, Problem> {
        let (spec, mode) = request.clone().resolve(&self.defaults)?;
        if mode == WsMode::Shared && spec.output.envelope == EnvelopeKind::Binary {
            return Err(Problem::bad_request(
                Some("output.wsMode"),
                "wsMode \"shared\" needs the seed or extended envelope: binary PCM frames do \
                 not say which stream they belong to",
            ));
        }
        let view = StreamView::from_spec(&spec, mode);
        let link = (mode == WsMode::Shared).then(|| LinkConfig::for_stream(&spec, &self.settings));
        self.next_instance += 1;
        let instance = self.next_instance;
        let (tx, exit) = oneshot::channel();
        let supervisor = StreamSupervisor::new(
            spec,
            self.settings.clone(),
            tx,
            Some(ctx.address().recipient()),
        )
        .map_err(|e| Problem::bad_request(Some("output"), e.to_string()))?
        .with_instance(instance);
        Ok(Prepared {
            request,
            view,
            link,
            supervisor,
            instance,
            exit,
        })
    }

    /// Starts a prepared stream under `lease`, replacing a local run of the same id.
    fn launch(&mut self, p: Prepared, lease: Lease) -> StreamStatus {
        self.fence.on_acquired(Instant::now());
        self.update_gate();
        let stm_id = p.request.stm_id.clone();
        let supervisor = p
            .supervisor
            .with_epoch(lease.epoch)
            .with_gate(self.gate.clone());
        let (supervisor, link_key) = match p.link {
            Some(cfg) => {
                let (key, link) = self.join_link(cfg, &stm_id);
                (supervisor.with_shared_link(link), Some(key))
            }
            None => (supervisor, None),
        };
        let stats = supervisor.stats();
        let (arbiter, placement) = self.pool.pick();
        let addr = StreamSupervisor::start_in_arbiter(&arbiter, move |_| supervisor);
        tracing::info!(stm_id = %stm_id, epoch = lease.epoch, arbiter = placement.index, "stream started");
        let entry = Entry {
            lease,
            request: p.request,
            view: p.view,
            supervisor: addr,
            instance: p.instance,
            state: StreamState::Starting,
            last_error: None,
            stats,
            exit: Some(p.exit),
            link_key,
            health: Health::default(),
            _placement: placement,
        };
        let status = self.status(&entry);
        if let Some(old) = self.streams.insert(stm_id.clone(), entry) {
            old.supervisor.do_send(Stop);
            self.leave_link(old.link_key.as_deref(), &stm_id);
        }
        status
    }

    /// Stops a local run (it drains in the background).
    fn stop_local(&mut self, stm_id: &str, why: &str) {
        if let Some(e) = self.streams.remove(stm_id) {
            e.supervisor.do_send(Stop);
            self.leave_link(e.link_key.as_deref(), stm_id);
            tracing::info!(stm_id = %stm_id, epoch = e.lease.epoch, "stream stopped: {why}");
        }
    }
}

impl Actor for StreamRegistry {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        self.tick(ctx);
        ctx.run_interval(RENEW_EVERY, |act, ctx| act.tick(ctx));
        ctx.run_interval(FENCE_CHECK_EVERY, |act, _| act.check_fence());
        // Cluster changes (a stream stored elsewhere, a lease released) wake a tick at once.
        let notify = Arc::new(Notify::new());
        self.coord.watch(notify.clone());
        ctx.add_stream(futures_util::stream::unfold(notify, |n| async move {
            n.notified().await;
            Some((ClusterChanged, n))
        }));
    }
}

fn unavailable(e: crate::cluster::CoordError) -> Problem {
    Problem::unavailable(e.to_string())
}

/// Create (`POST`, fails if it exists) or create-or-replace (`PUT`).
#[derive(Message)]
#[rtype(result = "Result<(StreamStatus, bool), Problem>")]
pub struct Upsert {
    pub request: StreamRequest,
    pub replace: bool,
}

impl Handler<Upsert> for StreamRegistry {
    type Result = AtomicResponse<Self, Result<(StreamStatus, bool), Problem>>;

    fn handle(&mut self, msg: Upsert, ctx: &mut Self::Context) -> Self::Result {
        if self.draining {
            return AtomicResponse::new(Box::pin(fut::ready(Err(Problem::draining()))));
        }
        let prepared = match self.prepare(msg.request, ctx) {
            Ok(p) => p,
            Err(problem) => return AtomicResponse::new(Box::pin(fut::ready(Err(problem)))),
        };
        let (coord, node) = (self.coord.clone(), self.node.clone());
        let request = prepared.request.clone();
        let replace = msg.replace;
        let running = self.streams.get(&request.stm_id).map(|e| e.lease.clone());
        let load = self.streams.len();
        AtomicResponse::new(Box::pin(
            async move {
                // Decided before storing: the store wakes every node, and the least-loaded
                // one may claim the stream before this node asks.
                let here = running.is_some() || {
                    let nodes = coord.nodes().await.map_err(unavailable)?;
                    let others: Vec<usize> = nodes
                        .iter()
                        .filter(|n| n.node != node)
                        .map(|n| n.streams)
                        .collect();
                    is_least_loaded(load, &others)
                };
                let put = coord
                    .put_stream(&request, replace)
                    .await
                    .map_err(unavailable)?;
                let lease = match (put, running) {
                    (Put::Exists, _) => return Err(Problem::conflict(&request.stm_id)),
                    (Put::Unchanged, _) => return Ok((put, None)),
                    // A replaced stream is a new run: it gets a new epoch, on the same node.
                    (_, Some(lease)) => {
                        coord.release(&lease).await.map_err(unavailable)?;
                        coord.acquire(&request.stm_id, &node).await
                    }
                    // A new stream runs here if this node is the least loaded; otherwise
                    // the least-loaded node claims it.
                    (_, None) if here => coord.acquire(&request.stm_id, &node).await,
                    (_, None) => return Ok((put, None)),
                }
                .map_err(unavailable)?;
                Ok((put, lease))
            }
            .into_actor(self)
            .map(move |res, act, _| {
                let (put, lease) = res?;
                let created = put == Put::Created;
                let id = prepared.request.stm_id.clone();
                match lease {
                    Some(lease) => Ok((act.launch(prepared, lease), created)),
                    None => match act.streams.get(&id) {
                        Some(e) if put == Put::Unchanged => Ok((act.status(e), false)),
                        _ => {
                            // Stored; another node runs it (or will claim it).
                            act.stop_local(&id, "owned by another node");
                            Ok((StreamStatus::elsewhere(prepared.view), created))
                        }
                    },
                }
            }),
        ))
    }
}

/// A job from Redis (see [`crate::node::jobs`]): validated like the API, then stored or
/// deleted; placement is the cluster's.
#[derive(Message)]
#[rtype(result = "Result<JobOutcome, Problem>")]
pub struct ApplyJob(pub Job);

impl Handler<ApplyJob> for StreamRegistry {
    type Result = AtomicResponse<Self, Result<JobOutcome, Problem>>;

    fn handle(&mut self, ApplyJob(job): ApplyJob, ctx: &mut Self::Context) -> Self::Result {
        if self.draining {
            return AtomicResponse::new(Box::pin(fut::ready(Err(Problem::draining()))));
        }
        let coord = self.coord.clone();
        match job {
            Job::Start(request) => {
                // The same checks as the API, including building the pipeline (not started).
                if let Err(problem) = self.prepare(request.clone(), ctx) {
                    return AtomicResponse::new(Box::pin(fut::ready(Err(problem))));
                }
                AtomicResponse::new(Box::pin(
                    async move {
                        let put = coord.put_stream(&request, true).await;
                        put.map(JobOutcome::from_put).map_err(unavailable)
                    }
                    .into_actor(self),
                ))
            }
            Job::Stop { stm_id } => AtomicResponse::new(Box::pin(
                async move { coord.remove_stream(&stm_id).await.map(|e| (stm_id, e)) }
                    .into_actor(self)
                    .map(|res, act, _| {
                        let (stm_id, existed) = res.map_err(unavailable)?;
                        act.stop_local(&stm_id, "deleted");
                        Ok(JobOutcome::from_removed(existed))
                    }),
            )),
        }
    }
}

/// Stop a stream (`DELETE`); it leaves the table at once and drains in the background.
#[derive(Message)]
#[rtype(result = "Result<(), Problem>")]
pub struct Remove(pub String);

impl Handler<Remove> for StreamRegistry {
    type Result = AtomicResponse<Self, Result<(), Problem>>;

    fn handle(&mut self, Remove(stm_id): Remove, _: &mut Self::Context) -> Self::Result {
        let coord = self.coord.clone();
        let id = stm_id.clone();
        AtomicResponse::new(Box::pin(
            async move { coord.remove_stream(&id).await }
                .into_actor(self)
                .map(move |res, act, _| {
                    let existed = res.map_err(unavailable)?;
                    let local = act.streams.contains_key(&stm_id);
                    act.stop_local(&stm_id, "deleted");
                    if existed || local {
                        Ok(())
                    } else {
                        Err(Problem::not_found(&stm_id))
                    }
                }),
        ))
    }
}

impl Handler<StateChanged> for StreamRegistry {
    type Result = ();

    fn handle(&mut self, msg: StateChanged, _: &mut Self::Context) {
        if let Some(e) = self.streams.get_mut(&msg.stm_id) {
            if e.instance == msg.instance {
                e.state = msg.state;
                e.last_error = msg.error;
                let healthy = e.healthy();
                e.health.observe(healthy, Instant::now());
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
        self.draining = true;
        let exits: Vec<_> = self
            .streams
            .values_mut()
            .filter_map(|e| {
                e.supervisor.do_send(Stop);
                e.exit.take()
            })
            .collect();
        // Shared links close once their last stream has drained (that stream's exit waits
        // for the close handshake, so the wait below covers it).
        for link in std::mem::take(&mut self.links).into_values() {
            link.addr.do_send(Retire);
        }
        let n = exits.len();
        tracing::info!(streams = n, "stopping all streams");
        let leases: Vec<Lease> = self.streams.values().map(|e| e.lease.clone()).collect();
        let coord = self.coord.clone();
        let node = self.node.clone();
        Box::pin(
            async move {
                // Peers stop counting this node at once: they place its streams as soon as
                // it lets go of them, instead of waiting for its heartbeat to expire.
                if let Err(e) = coord.leave(&node).await {
                    tracing::warn!(error = %e, "could not leave the cluster's node list");
                }
                let all = futures_util::future::join_all(exits);
                if tokio::time::timeout(msg.grace, all).await.is_err() {
                    tracing::warn!(grace = ?msg.grace, "some streams did not stop within the grace period");
                }
                // Let go of the leases now rather than at expiry (a cluster peer takes over).
                for lease in &leases {
                    if let Err(e) = coord.release(lease).await {
                        tracing::warn!(stm_id = %lease.stm_id, error = %e, "lease release failed");
                    }
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
