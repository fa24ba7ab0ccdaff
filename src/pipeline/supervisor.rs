//! StreamSupervisor: owns one stream. Builds the chain, follows its events, reconnects the
//! WHEP side with backoff when it fails, and drives a graceful stop (WHEP DELETE, flush, WS
//! close) that is bounded in time.
//!
//! Reconnects replace only the WhepPeerActor: the decoder, resampler and forwarder (and
//! with them the chunk sequence, media time and consumer connection) live on, so a WHEP
//! outage is invisible to the consumer except for the missing audio.

use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use tokio::sync::oneshot;

use super::backoff::{Backoff, Decision, RetryPolicy};
use super::decoder::{native_decode_format, DecoderConfig, DecoderCore};
use super::decoder_actor::DecoderActor;
use super::messages::{ChainEvent, Drain, SessionStarted, StreamState, Teardown};
use super::peer_actor::WhepPeerActor;
use super::reorder::ReorderConfig;
use super::resampler::ResamplerCore;
use super::resampler_actor::ResamplerActor;
use super::stats::{StatsSnapshot, StreamStats};
use crate::cluster::fence::DeliveryGate;
use crate::config::{PipelineSettings, StreamSpec};
use crate::output::envelope::StreamIdentity;
use crate::output::forwarder::{ForwarderConfig, Hold, Resume, WsForwarderActor};
use crate::output::link::WsLinkActor;

/// Upper bound for a graceful stop (DELETE + flush + close handshake).
const STOP_GRACE: Duration = Duration::from_secs(5);

/// How a stream ended.
#[derive(Debug, Clone)]
pub struct StreamExit {
    /// `None` for a requested stop; the reason otherwise.
    pub error: Option<String>,
    pub stats: StatsSnapshot,
}

/// Asks the supervisor to stop the stream gracefully.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Stop;

/// Reports every state change to an observer (the CLI, later the node registry).
#[derive(Message, Debug, Clone)]
#[rtype(result = "()")]
pub struct StateChanged {
    pub stm_id: String,
    /// Which run of the stream (a replaced stream's old run may still report).
    pub instance: u64,
    pub state: StreamState,
    pub error: Option<String>,
}

/// A chain could not even be built (bad output format for the decoder/resampler).
#[derive(Debug, thiserror::Error)]
#[error("cannot build the pipeline: {0}")]
pub struct BuildError(String);

pub struct StreamSupervisor {
    spec: Arc<StreamSpec>,
    settings: Arc<PipelineSettings>,
    stats: Arc<StreamStats>,
    state: StreamState,
    last_error: Option<String>,
    decoder_core: Option<(DecoderCore, ResamplerCore)>,
    decoder: Option<Addr<DecoderActor>>,
    peer: Option<Addr<WhepPeerActor>>,
    session: u64,
    retry: RetryPolicy,
    stopping: bool,
    peer_done: bool,
    drained: bool,
    exit: Option<oneshot::Sender<StreamExit>>,
    observer: Option<Recipient<StateChanged>>,
    instance: u64,
    /// `wsMode: shared`: the node's connection for this stream's consumer URL.
    shared_link: Option<Addr<WsLinkActor>>,
    epoch: u64,
    /// Self-fencing goes straight to the consumer side (see [`Hold`]).
    forwarder: Option<Addr<WsForwarderActor>>,
    /// The node's lease deadline (a cluster), checked by the forwarder before every write.
    gate: Option<Arc<DeliveryGate>>,
}

impl StreamSupervisor {
    /// Prepares the stream; the DSP cores are built here so a format error is reported to
    /// the caller instead of killing an actor later.
    pub fn new(
        spec: StreamSpec,
        settings: Arc<PipelineSettings>,
        exit: oneshot::Sender<StreamExit>,
        observer: Option<Recipient<StateChanged>>,
    ) -> Result<Self, BuildError> {
        let out = spec.output;
        out.validate()
            .map_err(|(field, msg)| BuildError(format!("{field}: {msg}")))?;
        let (rate, channels) =
            native_decode_format(out.sample_rate, out.channels, spec.force_resample);
        let decoder = DecoderCore::new(DecoderConfig {
            rate,
            channels,
            reorder: ReorderConfig {
                window_ms: settings.jitter_ms,
            },
            ..DecoderConfig::default()
        })
        .map_err(|e| BuildError(e.to_string()))?;
        let resampler = ResamplerCore::new(rate, channels, out.sample_rate, out.channels)
            .map_err(|e| BuildError(e.to_string()))?;
        tracing::info!(
            stm_id = %spec.stm_id,
            decode_rate = rate,
            decode_channels = channels,
            resample = !resampler.is_passthrough(),
            "pipeline built"
        );
        Ok(Self {
            retry: RetryPolicy::new(
                Backoff::new(settings.backoff_base, settings.backoff_max),
                settings.max_consecutive_failures,
            ),
            spec: Arc::new(spec),
            settings,
            stats: Arc::new(StreamStats::default()),
            state: StreamState::Starting,
            last_error: None,
            decoder_core: Some((decoder, resampler)),
            decoder: None,
            peer: None,
            session: 0,
            stopping: false,
            peer_done: false,
            drained: false,
            exit: Some(exit),
            observer,
            instance: 0,
            shared_link: None,
            epoch: 0,
            forwarder: None,
            gate: None,
        })
    }

    /// Tags the state reports of this run (see [`StateChanged::instance`]).
    pub fn with_instance(mut self, instance: u64) -> Self {
        self.instance = instance;
        self
    }

    /// The lease epoch this run delivers under (stamped on `extended`/`binary` envelopes).
    pub fn with_epoch(mut self, epoch: u64) -> Self {
        self.epoch = epoch;
        self
    }

    /// Delivers only while `gate` is open (the node's lease deadline, SPEC §6 fencing).
    pub fn with_gate(mut self, gate: Arc<DeliveryGate>) -> Self {
        self.gate = Some(gate);
        self
    }

    /// Sends on a connection shared with other streams instead of one of its own.
    pub fn with_shared_link(mut self, link: Addr<WsLinkActor>) -> Self {
        self.shared_link = Some(link);
        self
    }

    /// The counters of this stream (shared with its actors).
    pub fn stats(&self) -> Arc<StreamStats> {
        self.stats.clone()
    }

    fn set_state(&mut self, state: StreamState) {
        if self.state == state {
            return;
        }
        self.state = state;
        tracing::info!(stm_id = %self.spec.stm_id, %state, error = self.last_error.as_deref().unwrap_or(""), "stream state");
        if let Some(obs) = &self.observer {
            obs.do_send(StateChanged {
                stm_id: self.spec.stm_id.clone(),
                instance: self.instance,
                state,
                error: self.last_error.clone(),
            });
        }
    }

    fn start_peer(&mut self, ctx: &mut Context<Self>) {
        let Some(decoder) = self.decoder.clone() else {
            return;
        };
        self.session += 1;
        decoder.do_send(SessionStarted);
        let peer = WhepPeerActor::new(
            self.session,
            self.spec.clone(),
            self.settings.clone(),
            decoder,
            ctx.address().recipient(),
        )
        .start();
        self.peer = Some(peer);
        self.stats
            .whep_connects
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }

    /// The WHEP side failed: tear the session down and schedule a new one.
    fn peer_failed(&mut self, error: String, retryable: bool, ctx: &mut Context<Self>) {
        if self.stopping {
            return;
        }
        tracing::warn!(stm_id = %self.spec.stm_id, %error, retryable, "WHEP session failed");
        self.last_error = Some(error.clone());
        if let Some(peer) = self.peer.take() {
            peer.do_send(Teardown);
        }
        let (delay, attempt) = match self.retry.on_failure(retryable) {
            Decision::Retry { delay, attempt } => (delay, attempt),
            Decision::GiveUp { failures } => {
                let why = if retryable {
                    format!("{error} (gave up after {failures} consecutive failures)")
                } else {
                    error
                };
                self.finish(Some(why), ctx);
                return;
            }
        };
        self.set_state(if retryable {
            StreamState::Reconnecting
        } else {
            StreamState::Failing
        });
        self.stats
            .reconnects
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        tracing::info!(stm_id = %self.spec.stm_id, ?delay, attempt, "reconnecting WHEP");
        ctx.run_later(delay, |act, ctx| {
            if !act.stopping {
                act.start_peer(ctx);
            }
        });
    }

    /// Graceful stop: DELETE + close on the WHEP side, flush + close on the consumer side.
    fn begin_stop(&mut self, error: Option<String>, ctx: &mut Context<Self>) {
        if self.stopping {
            return;
        }
        self.stopping = true;
        if error.is_some() {
            self.last_error = error;
        }
        match self.peer.take() {
            Some(peer) => {
                peer.send(Teardown)
                    .into_actor(self)
                    .map(|_, act, ctx| {
                        act.peer_done = true;
                        act.maybe_finish(ctx);
                    })
                    .spawn(ctx);
            }
            None => self.peer_done = true,
        }
        match self.decoder.take() {
            Some(decoder) => decoder.do_send(Drain),
            None => self.drained = true,
        }
        ctx.run_later(STOP_GRACE, |act, ctx| {
            tracing::warn!(stm_id = %act.spec.stm_id, "graceful stop took too long; stopping now");
            act.peer_done = true;
            act.drained = true;
            act.maybe_finish(ctx);
        });
        self.maybe_finish(ctx);
    }

    fn maybe_finish(&mut self, ctx: &mut Context<Self>) {
        if self.peer_done && self.drained {
            let error = self
                .last_error
                .take()
                .filter(|_| self.state == StreamState::Failing);
            self.finish(error, ctx);
        }
    }

    fn finish(&mut self, error: Option<String>, ctx: &mut Context<Self>) {
        if let Some(peer) = self.peer.take() {
            peer.do_send(Teardown);
        }
        if let Some(decoder) = self.decoder.take() {
            decoder.do_send(Drain);
        }
        self.last_error = error.clone();
        self.set_state(StreamState::Stopped);
        if let Some(tx) = self.exit.take() {
            let _ = tx.send(StreamExit {
                error,
                stats: self.stats.snapshot(),
            });
        }
        ctx.stop();
    }
}

impl Actor for StreamSupervisor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        let Some((decoder_core, resampler_core)) = self.decoder_core.take() else {
            return;
        };
        let me = ctx.address().recipient::<ChainEvent>();
        let identity = StreamIdentity {
            stm_id: self.spec.stm_id.clone(),
            trace_id: self.spec.trace_id.clone(),
            node: self.settings.node.clone(),
            epoch: self.epoch,
        };
        let mut fwd_cfg = ForwarderConfig::for_stream(&self.spec, &self.settings);
        fwd_cfg.gate = self.gate.clone();
        let forwarder = WsForwarderActor::new(
            fwd_cfg,
            identity,
            self.stats.clone(),
            me.clone(),
            self.shared_link.take(),
        )
        .start();
        self.forwarder = Some(forwarder.clone());
        let resampler =
            ResamplerActor::new(resampler_core, forwarder, self.stats.listen.clone()).start();
        self.decoder = Some(
            DecoderActor::new(
                decoder_core,
                resampler,
                me,
                self.stats.clone(),
                self.settings.media_stall,
                self.settings.media_reconnect,
            )
            .start(),
        );
        self.set_state(StreamState::Connecting);
        self.start_peer(ctx);
    }
}

impl Handler<ChainEvent> for StreamSupervisor {
    type Result = ();

    fn handle(&mut self, event: ChainEvent, ctx: &mut Self::Context) {
        match event {
            ChainEvent::PeerConnected { session } if session == self.session => {
                tracing::info!(stm_id = %self.spec.stm_id, session, "WHEP connected; waiting for RTP");
            }
            ChainEvent::PeerFailed {
                session,
                error,
                retryable,
            } if session == self.session => self.peer_failed(error, retryable, ctx),
            ChainEvent::PeerConnected { .. } | ChainEvent::PeerFailed { .. } => {
                // A session we already replaced: ignore.
            }
            ChainEvent::MediaFlowing if !self.stopping => {
                self.retry.on_success();
                self.last_error = None;
                self.set_state(StreamState::Live);
            }
            ChainEvent::MediaStalled if !self.stopping => {
                self.set_state(StreamState::Stalled);
            }
            ChainEvent::MediaTimeout if !self.stopping => {
                let secs = self.settings.media_reconnect.as_secs_f32();
                self.peer_failed(format!("no RTP for {secs:.0} s"), true, ctx);
            }
            ChainEvent::MediaFlowing | ChainEvent::MediaStalled | ChainEvent::MediaTimeout => {}
            ChainEvent::ForwarderFailed { error } => {
                self.last_error = Some(error.clone());
                self.set_state(StreamState::Failing);
                self.drained = true;
                self.begin_stop(Some(error), ctx);
            }
            ChainEvent::Drained => {
                self.drained = true;
                self.maybe_finish(ctx);
            }
        }
    }
}

impl Handler<Stop> for StreamSupervisor {
    type Result = ();

    fn handle(&mut self, _: Stop, ctx: &mut Self::Context) {
        self.begin_stop(None, ctx);
    }
}

/// Self-fencing: the node cannot confirm this stream's lease; hold delivery (keep pulling and
/// buffering). A [`Stop`] that follows discards what is held.
impl Handler<Hold> for StreamSupervisor {
    type Result = ();

    fn handle(&mut self, msg: Hold, _: &mut Self::Context) {
        if let Some(f) = &self.forwarder {
            f.do_send(msg);
        }
    }
}

/// The lease is confirmed again (same epoch, or re-acquired with a new one): deliver.
impl Handler<Resume> for StreamSupervisor {
    type Result = ();

    fn handle(&mut self, msg: Resume, _: &mut Self::Context) {
        self.epoch = msg.epoch;
        if let Some(f) = &self.forwarder {
            f.do_send(msg);
        }
    }
}
