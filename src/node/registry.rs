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

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use crate::cluster::claim::plan_claims;
use crate::cluster::{Coordinator, EmbeddedCoordinator, Lease, NodeInfo, Put};

use actix::prelude::*;
use serde::Serialize;
use tokio::sync::{oneshot, Notify};

use super::arbiters::{ArbiterPool, Placement};
use crate::api::problem::Problem;
use crate::api::spec::{NodeDefaults, StreamRequest, StreamView, WsMode};
use crate::config::{EnvelopeKind, PipelineSettings};
use crate::output::link::{LinkConfig, Retire, WsLinkActor};
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
    _placement: Placement,
}

/// A consumer connection shared by the streams that name the same URL and headers.
struct SharedLink {
    addr: Addr<WsLinkActor>,
    streams: BTreeSet<String>,
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
}

impl StreamStatus {
    /// A stored stream that another node runs (its figures are on that node).
    fn elsewhere(spec: StreamView) -> Self {
        Self {
            spec,
            state: StreamState::Starting,
            owner: String::new(),
            epoch: 0,
            stats: StatsSnapshot::default(),
            last_error: None,
        }
    }
}

impl StreamRegistry {
    pub fn new(
        settings: PipelineSettings,
        defaults: NodeDefaults,
        address: String,
        pool: ArbiterPool,
    ) -> Self {
        Self {
            coord: Arc::new(EmbeddedCoordinator::default()),
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
        StreamStatus {
            spec: e.view.clone(),
            state: e.state,
            owner: e.lease.node.clone(),
            epoch: e.lease.epoch,
            stats: e.stats.snapshot(),
            last_error: e.last_error.clone(),
        }
    }

    /// Uses `coord` instead of the embedded coordinator (a cluster).
    pub fn with_coordinator(mut self, coord: Arc<dyn Coordinator>) -> Self {
        self.coord = coord;
        self
    }

    fn node_info(&self) -> NodeInfo {
        NodeInfo {
            node: self.node.clone(),
            address: self.address.clone(),
            streams: self.streams.len(),
            arbiter_loads: self.pool.loads(),
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
        let stm_id = p.request.stm_id.clone();
        let supervisor = p.supervisor.with_epoch(lease.epoch);
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

    /// Every second: renew this node's leases (a lost one stops its stream at once: another
    /// node may own it now), send the heartbeat, and claim what the cluster needs this node to
    /// run ([`plan_claims`]): unowned streams while this node is the least loaded, and a fresh
    /// epoch for streams whose spec changed. One tick at a time; the API keeps being served
    /// meanwhile.
    fn tick(&mut self, ctx: &mut Context<Self>) {
        if self.ticking {
            return;
        }
        self.ticking = true;
        let leases: Vec<Lease> = self.streams.values().map(|e| e.lease.clone()).collect();
        let local: BTreeMap<String, StreamRequest> = self
            .streams
            .iter()
            .map(|(id, e)| (id.clone(), e.request.clone()))
            .collect();
        let info = self.node_info();
        let coord = self.coord.clone();
        let draining = self.draining;
        async move {
            let lost = coord.renew(&leases).await?;
            if draining {
                return Ok((lost, Vec::new()));
            }
            // Read before writing our own heartbeat: a twin's entry is still visible then.
            let nodes = coord.nodes().await?;
            if let Err(e) = coord.heartbeat(&info).await {
                tracing::warn!(error = %e, "heartbeat failed");
            }
            let stored = coord.streams().await?;
            // Two processes heartbeating one id would each take the other's leases as their
            // own: say so loudly (the address tells them apart).
            if let Some(twin) = nodes
                .iter()
                .find(|n| n.node == info.node && n.address != info.address)
            {
                tracing::error!(
                    node = %info.node, other = %twin.address,
                    "another live node uses this node.id; give every node its own id"
                );
            }
            let others: Vec<usize> = nodes
                .iter()
                .filter(|n| n.node != info.node)
                .map(|n| n.streams)
                .collect();
            let plan = plan_claims(&stored, &local, &others);
            for id in &plan.restart {
                if let Some(lease) = leases.iter().find(|l| &l.stm_id == id) {
                    coord.release(lease).await?;
                }
            }
            let mut claimed = Vec::new();
            for id in plan.restart.iter().chain(&plan.claim) {
                if let Some(lease) = coord.acquire(id, &info.node).await? {
                    if let Some(spec) = stored.iter().find(|s| &s.stm_id == id) {
                        claimed.push((spec.clone(), lease));
                    }
                }
            }
            Ok::<_, crate::cluster::CoordError>((lost, claimed))
        }
        .into_actor(self)
        .map(|res, act, ctx| {
            act.ticking = false;
            if std::mem::take(&mut act.tick_again) {
                ctx.notify(Wake);
            }
            let (lost, claimed) = match res {
                Ok(r) => r,
                Err(e) => {
                    tracing::warn!(error = %e, "coordinator tick failed");
                    return;
                }
            };
            for l in lost {
                if act.streams.get(&l.stm_id).is_some_and(|e| e.lease == l) {
                    tracing::warn!(stm_id = %l.stm_id, epoch = l.epoch, "lease lost");
                    act.stop_local(&l.stm_id, "lease lost");
                }
            }
            for (request, lease) in claimed {
                // Started meanwhile by an API call on this node under this very lease.
                if act.streams.get(&request.stm_id).is_some_and(|e| e.lease == lease) {
                    continue;
                }
                let id = request.stm_id.clone();
                match act.prepare(request, ctx) {
                    Ok(p) => {
                        tracing::info!(stm_id = %id, epoch = lease.epoch, "claimed");
                        act.launch(p, lease);
                    }
                    Err(problem) => {
                        tracing::warn!(stm_id = %id, error = %problem.detail, "stored spec cannot run here");
                        let coord = act.coord.clone();
                        actix::spawn(async move {
                            let _ = coord.release(&lease).await;
                        });
                    }
                }
            }
        })
        .spawn(ctx);
    }

    /// The node's shared link for `cfg` (started on first use), and its key.
    fn join_link(&mut self, cfg: LinkConfig, stm_id: &str) -> (String, Addr<WsLinkActor>) {
        let key = cfg.share_key();
        let link = self.links.entry(key.clone()).or_insert_with(|| {
            tracing::info!(url = %crate::output::link::redact(&cfg.url), "shared consumer link started");
            SharedLink {
                addr: WsLinkActor::shared(cfg).start(),
                streams: BTreeSet::new(),
            }
        });
        link.streams.insert(stm_id.to_owned());
        (key, link.addr.clone())
    }

    /// `stm_id` no longer sends on the link `key`; the last stream out retires it (it closes
    /// once the streams still draining on it have left).
    fn leave_link(&mut self, key: Option<&str>, stm_id: &str) {
        let Some(key) = key else { return };
        let Some(link) = self.links.get_mut(key) else {
            return;
        };
        // A replaced stream's new run may have joined the same link under the same id.
        let still_used = self.streams.get(stm_id).and_then(|e| e.link_key.as_deref()) == Some(key);
        if !still_used {
            link.streams.remove(stm_id);
        }
        if link.streams.is_empty() {
            link.addr.do_send(Retire);
            self.links.remove(key);
        }
    }
}

impl Actor for StreamRegistry {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        self.tick(ctx);
        ctx.run_interval(RENEW_EVERY, |act, ctx| act.tick(ctx));
        // Cluster changes (a stream stored elsewhere, a lease released) wake a tick at once.
        let notify = Arc::new(Notify::new());
        self.coord.watch(notify.clone());
        ctx.add_stream(futures_util::stream::unfold(notify, |n| async move {
            n.notified().await;
            Some((ClusterChanged, n))
        }));
    }
}

/// Run a tick now (queued behind the current message).
#[derive(Message)]
#[rtype(result = "()")]
struct Wake;

impl Handler<Wake> for StreamRegistry {
    type Result = ();

    fn handle(&mut self, _: Wake, ctx: &mut Self::Context) {
        self.tick(ctx);
    }
}

/// Something changed in the cluster (see [`Coordinator::watch`]).
struct ClusterChanged;

impl StreamHandler<ClusterChanged> for StreamRegistry {
    fn handle(&mut self, _: ClusterChanged, ctx: &mut Self::Context) {
        if self.ticking {
            self.tick_again = true;
        } else {
            self.tick(ctx);
        }
    }

    /// The watch never ends; if it did, the periodic tick still runs.
    fn finished(&mut self, _: &mut Self::Context) {}
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
        AtomicResponse::new(Box::pin(
            async move {
                let put = coord
                    .put_stream(&request, replace)
                    .await
                    .map_err(unavailable)?;
                if put == Put::Exists {
                    return Err(Problem::conflict(&request.stm_id));
                }
                // A replaced stream is a new run: it gets a new epoch.
                if let Some(lease) = running {
                    coord.release(&lease).await.map_err(unavailable)?;
                }
                let lease = coord
                    .acquire(&request.stm_id, &node)
                    .await
                    .map_err(unavailable)?;
                Ok((put, lease))
            }
            .into_actor(self)
            .map(move |res, act, _| {
                let (put, lease) = res?;
                let created = put == Put::Created;
                match lease {
                    Some(lease) => Ok((act.launch(prepared, lease), created)),
                    None => {
                        // Another node holds it (a cluster): it is stored and runs there.
                        act.stop_local(&prepared.request.stm_id, "owned by another node");
                        Ok((StreamStatus::elsewhere(prepared.view), created))
                    }
                }
            }),
        ))
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

/// This node's own figures.
#[derive(Message)]
#[rtype(result = "NodeInfo")]
pub struct GetNode;

impl Handler<GetNode> for StreamRegistry {
    type Result = MessageResult<GetNode>;

    fn handle(&mut self, _: GetNode, _: &mut Self::Context) -> Self::Result {
        MessageResult(self.node_info())
    }
}

/// The live nodes, as the coordinator knows them (`GET /v1/nodes`).
#[derive(Message)]
#[rtype(result = "Result<Vec<NodeInfo>, Problem>")]
pub struct ListNodes;

impl Handler<ListNodes> for StreamRegistry {
    type Result = ResponseFuture<Result<Vec<NodeInfo>, Problem>>;

    fn handle(&mut self, _: ListNodes, _: &mut Self::Context) -> Self::Result {
        let coord = self.coord.clone();
        let me = self.node_info();
        Box::pin(async move {
            let mut nodes = coord.nodes().await.map_err(unavailable)?;
            // Our own figures are fresher than our last heartbeat.
            match nodes.iter_mut().find(|n| n.node == me.node) {
                Some(n) => *n = me,
                None => nodes.push(me),
            }
            Ok(nodes)
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
        Box::pin(
            async move {
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

/// One live listener of a stream's converted audio, for `GET /v1/streams/{stmId}/listen`:
/// the frames to come plus the format they are in (for the WAV header).
#[derive(Debug)]
pub struct ListenSource {
    pub listener: crate::output::listen::Listener,
    pub sample_rate: u32,
    pub channels: u16,
}

/// Subscribe to a stream's audio; `None` when this node runs no stream of that id.
#[derive(Message)]
#[rtype(result = "Option<ListenSource>")]
pub struct GetListen(pub String);

impl Handler<GetListen> for StreamRegistry {
    type Result = Option<ListenSource>;

    fn handle(&mut self, GetListen(id): GetListen, _: &mut Self::Context) -> Self::Result {
        let e = self.streams.get(&id)?;
        // A running stream's view is resolved (every output field set); applying it over the
        // node default only makes that total without an unwrap.
        let format = e
            .view
            .output
            .as_ref()
            .map_or(self.defaults.output, |o| o.apply(self.defaults.output));
        Some(ListenSource {
            listener: e.stats.listen.subscribe(),
            sample_rate: format.sample_rate,
            channels: format.channels,
        })
    }
}
