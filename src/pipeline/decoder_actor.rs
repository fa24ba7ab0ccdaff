//! DecoderActor: RTP in, PCM at the decode rate out. Wraps [`DecoderCore`] (reorder, loss
//! concealment, Opus decode) and owns the media watchdog, since it is the stage that sees
//! every packet.
//!
//! The watchdog is one 1 s tick per stream: no per-packet timers. It tells the supervisor
//! when RTP stops (SRS sends silence, not BYE, when a publisher leaves).

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;

use super::decoder::DecoderCore;
use super::messages::{ChainEvent, Drain, Pcm, RtpIn, SessionStarted};
use super::resampler_actor::ResamplerActor;
use super::stats::StreamStats;

const WATCHDOG_TICK: Duration = Duration::from_secs(1);

pub struct DecoderActor {
    core: DecoderCore,
    next: Addr<ResamplerActor>,
    supervisor: Recipient<ChainEvent>,
    stats: Arc<StreamStats>,
    /// Last packet (or session start): the media timeouts count from here.
    last_rtp: Instant,
    flowing: bool,
    stalled_reported: bool,
    timeout_reported: bool,
    stall_after: Duration,
    reconnect_after: Duration,
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
            last_rtp: Instant::now(),
            flowing: false,
            stalled_reported: false,
            timeout_reported: false,
            stall_after,
            reconnect_after,
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

    fn watchdog(&mut self) {
        let idle = self.last_rtp.elapsed();
        if idle >= self.reconnect_after && !self.timeout_reported {
            self.timeout_reported = true;
            self.supervisor.do_send(ChainEvent::MediaTimeout);
        } else if idle >= self.stall_after && !self.stalled_reported {
            self.stalled_reported = true;
            self.flowing = false;
            // What the reorder buffer holds will not be completed now.
            self.flush();
            self.supervisor.do_send(ChainEvent::MediaStalled);
        }
    }
}

impl Actor for DecoderActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.run_interval(WATCHDOG_TICK, |act, _| act.watchdog());
    }
}

impl Handler<RtpIn> for DecoderActor {
    type Result = ();

    fn handle(&mut self, RtpIn(pkt): RtpIn, _: &mut Self::Context) {
        let arrival = pkt.arrival;
        self.last_rtp = arrival;
        let mut out = Vec::with_capacity(self.frame_hint);
        self.core.push(pkt, &mut out);
        self.forward(out, Some(arrival));
        self.publish_stats();
        if !self.flowing {
            self.flowing = true;
            self.stalled_reported = false;
            self.timeout_reported = false;
            self.supervisor.do_send(ChainEvent::MediaFlowing);
        }
    }
}

impl Handler<SessionStarted> for DecoderActor {
    type Result = ();

    fn handle(&mut self, _: SessionStarted, _: &mut Self::Context) {
        self.flush();
        self.last_rtp = Instant::now();
        self.flowing = false;
        self.stalled_reported = false;
        self.timeout_reported = false;
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
