//! The registry's side of cluster coordination: the one-second round ([`run_tick`]) and
//! applying its outcome (lost leases, claims, hand-overs), self-fencing checks, and the
//! wake-ups that run a round at once.

use std::collections::BTreeSet;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Instant;

use actix::prelude::*;

use super::StreamRegistry;
use crate::cluster::fence::Reachability;
use crate::cluster::Lease;
use crate::node::tick::{run_tick, LostFate, TickInput, TickOutcome};
use crate::output::forwarder::{Hold, Resume};

impl StreamRegistry {
    /// Every second: one coordination round ([`run_tick`]: renew, settle lost leases,
    /// heartbeat, claim), then apply its outcome here. One round at a time; the API keeps
    /// being served meanwhile.
    pub(super) fn tick(&mut self, ctx: &mut Context<Self>) {
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
            let resumed = self.fence.on_renewed(sent);
            self.update_gate();
            if resumed {
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
    pub(super) fn check_fence(&mut self) {
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
pub(super) struct ClusterChanged;

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
