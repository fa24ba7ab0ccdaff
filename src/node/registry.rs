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
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::cluster::claim::is_least_loaded;
use crate::cluster::fence::{FenceClock, Reachability};
use crate::cluster::handover::{HandoverPolicy, Health};
use crate::cluster::{Coordinator, EmbeddedCoordinator, Lease, NodeInfo, Put};

use actix::prelude::*;
use serde::Serialize;
use tokio::sync::{oneshot, Notify};

use super::arbiters::{ArbiterPool, Placement};
use super::tick::{run_tick, LostFate, TickInput, TickOutcome};
use crate::api::problem::Problem;
use crate::api::spec::{NodeDefaults, StreamRequest, StreamView, WsMode};
use crate::config::{EnvelopeKind, PipelineSettings};
use crate::output::forwarder::{Hold, Resume};
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
    /// Since when the stream is not live or its consumer not connected.
    health: Health,
    _placement: Placement,
}

impl Entry {
    fn healthy(&self) -> bool {
        self.state == StreamState::Live && self.stats.consumer_connected.load(Relaxed)
    }
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
    /// Self-fencing and the post-outage claim pause.
    fence: FenceClock,
    /// When a failing stream goes to another node.
    handover: HandoverPolicy,
}

/// How often the registry checks whether delivery must be held.
const FENCE_CHECK_EVERY: Duration = Duration::from_millis(200);

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

    /// A stored stream as the coordinator sees it: its owner's lease and the state of that
    /// owner's last heartbeat (`starting` while nobody owns it).
    fn from_cluster(request: &StreamRequest, owner: Option<&Lease>, nodes: &[NodeInfo]) -> Self {
        let mut status = Self::elsewhere(StreamView::from_request(request));
        if let Some(lease) = owner {
            status.owner = lease.node.clone();
            status.epoch = lease.epoch;
            if let Some(state) = nodes
                .iter()
                .find(|n| n.node == lease.node)
                .and_then(|n| n.stream_states.get(&request.stm_id))
            {
                status.state = *state;
            }
        }
        status
    }
}

/// A stream this node does not run, as the cluster knows it.
#[derive(Debug, Clone)]
pub struct Elsewhere {
    pub status: StreamStatus,
    /// Its owner's API (`host:port`), when it has a live owner.
    pub address: Option<String>,
}

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
        self.coord = coord;
        self
    }

    /// When failing streams move to another node (a cluster).
    pub fn with_handover(mut self, policy: HandoverPolicy) -> Self {
        self.handover = policy;
        self
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

    /// Every second: one coordination round ([`run_tick`]: renew, settle lost leases,
    /// heartbeat, claim), then apply its outcome here. One round at a time; the API keeps
    /// being served meanwhile.
    fn tick(&mut self, ctx: &mut Context<Self>) {
        if self.ticking {
            return;
        }
        self.ticking = true;
        let now = Instant::now();
        for e in self.streams.values_mut() {
            let healthy = e.healthy();
            e.health.observe(healthy, now);
        }
        let input = TickInput {
            failing: self
                .streams
                .values()
                .filter(|e| e.health.is_failing(&self.handover, now))
                .map(|e| e.lease.clone())
                .collect(),
            leases: self.streams.values().map(|e| e.lease.clone()).collect(),
            local: self
                .streams
                .iter()
                .map(|(id, e)| (id.clone(), e.request.clone()))
                .collect(),
            info: self.node_info(),
            draining: self.draining,
            may_claim_orphans: self.fence.may_claim_orphans(Instant::now()),
        };
        run_tick(self.coord.clone(), input)
            .into_actor(self)
            .map(|out, act, ctx| {
                act.ticking = false;
                if std::mem::take(&mut act.tick_again) {
                    ctx.notify(Wake);
                }
                act.apply_tick(out, ctx);
            })
            .spawn(ctx);
    }

    fn apply_tick(&mut self, out: TickOutcome, ctx: &mut Context<Self>) {
        let now = Instant::now();
        match self.fence.on_call_result(out.error.is_none(), now) {
            Reachability::Lost => tracing::warn!(
                error = %out.error.as_ref().map(ToString::to_string).unwrap_or_default(),
                "coordinator unreachable; streams keep running, new claims wait"
            ),
            Reachability::Back(after) => tracing::info!(
                outage = ?after, wait = ?self.coord.lease_ttl(),
                "coordinator reachable again; owners re-acquire first, orphans are claimed \
                 after one lease TTL"
            ),
            Reachability::Same => {
                if let Some(e) = &out.error {
                    tracing::debug!(error = %e, "coordinator round failed");
                }
            }
        }
        let lost_ids: BTreeSet<&str> = out.lost.iter().map(|(l, _)| l.stm_id.as_str()).collect();
        if let Some(sent) = out.renewed {
            if self.fence.on_renewed(sent) {
                tracing::info!(
                    streams = self.streams.len(),
                    "leases confirmed; delivery resumes"
                );
                for e in self.streams.values() {
                    if !lost_ids.contains(e.lease.stm_id.as_str()) {
                        e.supervisor.do_send(Resume {
                            epoch: e.lease.epoch,
                        });
                    }
                }
            }
        }
        for (lease, fate) in out.lost {
            let Some(e) = self.streams.get_mut(&lease.stm_id) else {
                continue;
            };
            if e.lease != lease {
                continue;
            }
            match fate {
                LostFate::Reacquired(new) => {
                    tracing::warn!(
                        stm_id = %lease.stm_id, old_epoch = lease.epoch, epoch = new.epoch,
                        "lease had expired; re-acquired, delivering the backlog"
                    );
                    e.supervisor.do_send(Resume { epoch: new.epoch });
                    e.lease = new;
                }
                LostFate::Taken => {
                    tracing::warn!(stm_id = %lease.stm_id, epoch = lease.epoch, "lease lost to another node; discarding held audio");
                    e.supervisor.do_send(Hold);
                    self.stop_local(&lease.stm_id, "lease lost");
                }
                LostFate::Deleted => self.stop_local(&lease.stm_id, "deleted"),
                LostFate::Unknown => e.supervisor.do_send(Hold),
            }
        }
        for lease in out.hand_over {
            self.hand_over(lease);
        }
        for (request, lease) in out.claimed {
            // Started meanwhile by an API call on this node under this very lease.
            if self
                .streams
                .get(&request.stm_id)
                .is_some_and(|e| e.lease == lease)
            {
                continue;
            }
            let id = request.stm_id.clone();
            match self.prepare(request, ctx) {
                Ok(p) => {
                    tracing::info!(stm_id = %id, epoch = lease.epoch, "claimed");
                    self.launch(p, lease);
                }
                Err(problem) => {
                    tracing::warn!(stm_id = %id, error = %problem.detail, "stored spec cannot run here");
                    let coord = self.coord.clone();
                    actix::spawn(async move {
                        let _ = coord.release(&lease).await;
                    });
                }
            }
        }
        if self.streams.is_empty() {
            self.fence.clear();
        }
    }

    /// Gives a failing stream to the cluster: stop delivering at once (what is held is
    /// dropped: the next owner starts afresh), then release it with a cooldown for this node.
    fn hand_over(&mut self, lease: Lease) {
        let Some(e) = self.streams.get(&lease.stm_id) else {
            return;
        };
        if e.lease != lease {
            return;
        }
        let unhealthy = e.health.unhealthy_for(Instant::now()).unwrap_or_default();
        tracing::warn!(
            stm_id = %lease.stm_id, epoch = lease.epoch, state = %e.state,
            consumer_connected = e.stats.consumer_connected.load(Relaxed),
            error = e.last_error.as_deref().unwrap_or(""),
            unhealthy = ?unhealthy,
            "local retries have not fixed the stream; handing it to another node"
        );
        e.supervisor.do_send(Hold);
        self.stop_local(&lease.stm_id, "handed over");
        let (coord, policy) = (self.coord.clone(), self.handover);
        actix::spawn(async move {
            match coord.hand_over(&lease, &policy).await {
                Ok(Some(cooldown)) => {
                    tracing::info!(stm_id = %lease.stm_id, ?cooldown, "handed over; cooling down")
                }
                Ok(None) => {}
                Err(e) => {
                    // The lease expires by itself; without the cooldown this node may claim
                    // the stream again.
                    tracing::warn!(stm_id = %lease.stm_id, error = %e, "hand-over not recorded")
                }
            }
        });
    }

    /// Several times a second: hold every stream's delivery once the leases may be about to
    /// expire unconfirmed (self-fencing; see [`FenceClock`]).
    fn check_fence(&mut self) {
        let now = Instant::now();
        if self.fence.should_hold(now) {
            tracing::warn!(
                streams = self.streams.len(),
                unconfirmed = ?self.fence.unconfirmed_for(now),
                "cannot renew leases; holding delivery (self-fencing) and buffering"
            );
            for e in self.streams.values() {
                e.supervisor.do_send(Hold);
            }
        }
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

/// Every stream of the cluster (`GET /v1/streams`): this node's with their live figures,
/// the others as the coordinator sees them.
#[derive(Message)]
#[rtype(result = "Result<Vec<StreamStatus>, Problem>")]
pub struct ListCluster;

impl Handler<ListCluster> for StreamRegistry {
    type Result = ResponseFuture<Result<Vec<StreamStatus>, Problem>>;

    fn handle(&mut self, _: ListCluster, _: &mut Self::Context) -> Self::Result {
        let mut local: BTreeMap<String, StreamStatus> = self
            .streams
            .iter()
            .map(|(id, e)| (id.clone(), self.status(e)))
            .collect();
        let coord = self.coord.clone();
        Box::pin(async move {
            let stored = coord.streams().await.map_err(unavailable)?;
            let nodes = coord.nodes().await.map_err(unavailable)?;
            let remote: Vec<&StreamRequest> = stored
                .iter()
                .filter(|r| !local.contains_key(&r.stm_id))
                .collect();
            let owners =
                futures_util::future::join_all(remote.iter().map(|r| coord.owner(&r.stm_id))).await;
            let mut all: Vec<StreamStatus> = Vec::with_capacity(stored.len());
            for (request, owner) in remote.into_iter().zip(owners) {
                let owner = owner.map_err(unavailable)?;
                all.push(StreamStatus::from_cluster(request, owner.as_ref(), &nodes));
            }
            // Local runs first in the id order the coordinator gives, then the rest.
            all.extend(std::mem::take(&mut local).into_values());
            all.sort_by(|a, b| a.spec.stm_id.cmp(&b.spec.stm_id));
            Ok(all)
        })
    }
}

/// Where a stream this node does not run is (`None`: no such stream).
#[derive(Message)]
#[rtype(result = "Result<Option<Elsewhere>, Problem>")]
pub struct Locate(pub String);

impl Handler<Locate> for StreamRegistry {
    type Result = ResponseFuture<Result<Option<Elsewhere>, Problem>>;

    fn handle(&mut self, Locate(id): Locate, _: &mut Self::Context) -> Self::Result {
        let coord = self.coord.clone();
        let me = self.node.clone();
        Box::pin(async move {
            let stored = coord.streams().await.map_err(unavailable)?;
            let Some(request) = stored.into_iter().find(|r| r.stm_id == id) else {
                return Ok(None);
            };
            let owner = coord.owner(&id).await.map_err(unavailable)?;
            let nodes = coord.nodes().await.map_err(unavailable)?;
            let address = owner
                .as_ref()
                .filter(|l| l.node != me)
                .and_then(|l| nodes.iter().find(|n| n.node == l.node))
                .map(|n| n.address.clone());
            Ok(Some(Elsewhere {
                status: StreamStatus::from_cluster(&request, owner.as_ref(), &nodes),
                address,
            }))
        })
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
