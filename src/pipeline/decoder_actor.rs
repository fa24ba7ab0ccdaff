//! DecoderActor: RTP in, PCM at the decode rate out. Wraps [`DecoderCore`] (reorder, loss
//! concealment, Opus decode) and owns the media watchdog, since it is the stage that sees
//! every packet.
//!
//! The watchdog ([`MediaWatchdog`]) is ticked once a second per stream: no per-packet
//! timers. It tells the supervisor when RTP stops (SRS sends silence, not BYE, when a
//! publisher leaves).

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;

use super::decoder::DecoderCore;
use super::messages::{ChainEvent, Drain, Pcm, RtpIn, SessionStarted};
use super::resampler_actor::ResamplerActor;
use super::stats::StreamStats;
use super::watchdog::{MediaEvent, MediaWatchdog};

const WATCHDOG_TICK: Duration = Duration::from_secs(1);

pub struct DecoderActor {
    core: DecoderCore,
    next: Addr<ResamplerActor>,
    supervisor: Recipient<ChainEvent>,
    stats: Arc<StreamStats>,
    watchdog: MediaWatchdog,
    /// Frames per packet at the decode rate, to size output buffers without regrowth.
    frame_hint: usize,
}

impl DecoderActor {
    pub fn new(
        core: DecoderCore,
        next: Addr<ResamplerActor>,
        supervisor: Recipient<ChainEvent>,
        stats: Arc<StreamStats>,
        stall_after: Duration,
        reconnect_after: Duration,
    ) -> Self {
        let frame_hint = core.rate() as usize / 50 * core.channels() as usize;
        Self {
            core,
            next,
            supervisor,
            stats,
            watchdog: MediaWatchdog::new(stall_after, reconnect_after, Instant::now()),
            frame_hint,
        }
    }

    fn publish_stats(&self) {
        let s = self.core.stats();
        self.stats.packets.store(s.packets, Relaxed);
        self.stats.lost.store(s.lost, Relaxed);
        self.stats.late.store(s.late + s.duplicates, Relaxed);
        self.stats.discontinuities.store(s.discontinuities, Relaxed);
        self.stats.concealed_ms.store(s.concealed_ms, Relaxed);
    }

    fn forward(&self, samples: Vec<i16>, arrival: Option<Instant>) {
        if !samples.is_empty() {
            self.next.do_send(Pcm { samples, arrival });
        }
    }

    fn flush(&mut self) {
        let mut out = Vec::new();
        self.core.flush(&mut out);
        self.forward(out, None);
        self.publish_stats();
    }

    fn report(&mut self, event: MediaEvent) {
        let event = match event {
            MediaEvent::Flowing => ChainEvent::MediaFlowing,
            MediaEvent::Stalled => {
                // What the reorder buffer holds will not be completed now.
                self.flush();
                ChainEvent::MediaStalled
            }
            MediaEvent::TimedOut => ChainEvent::MediaTimeout,
        };
        self.supervisor.do_send(event);
    }
}

impl Actor for DecoderActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.run_interval(WATCHDOG_TICK, |act, _| {
            if let Some(event) = act.watchdog.tick(Instant::now()) {
                act.report(event);
            }
        });
    }
}

impl Handler<RtpIn> for DecoderActor {
    type Result = ();

    fn handle(&mut self, RtpIn(pkt): RtpIn, _: &mut Self::Context) {
        let arrival = pkt.arrival;
        let mut out = Vec::with_capacity(self.frame_hint);
        self.core.push(pkt, &mut out);
        self.forward(out, Some(arrival));
        self.publish_stats();
        if let Some(event) = self.watchdog.packet(arrival) {
            self.report(event);
        }
    }
}

impl Handler<SessionStarted> for DecoderActor {
    type Result = ();

    fn handle(&mut self, _: SessionStarted, _: &mut Self::Context) {
        self.flush();
        self.watchdog.restart(Instant::now());
    }
}

impl Handler<Drain> for DecoderActor {
    type Result = ();

    fn handle(&mut self, msg: Drain, ctx: &mut Self::Context) {
        self.flush();
        self.next.do_send(msg);
        ctx.stop();
    }
}
