//! ResamplerActor: converts decoder PCM to the target rate/channels with
//! [`ResamplerCore`], or passes messages through untouched when libopus already decoded
//! the target format (the common 16 kHz mono case costs one mailbox hop, no copy).
//!
//! It is the last stage that sees the stream's audio in its output format before chunking,
//! so it also feeds the live listeners ([`ListenTap`], `GET /v1/streams/{stmId}/listen`).

use actix::prelude::*;

use super::messages::{Drain, Pcm};
use super::resampler::ResamplerCore;
use crate::output::forwarder::WsForwarderActor;
use crate::output::listen::ListenTap;

pub struct ResamplerActor {
    /// `None` when the decoder output is already in the target format.
    core: Option<ResamplerCore>,
    next: Addr<WsForwarderActor>,
    listen: ListenTap,
}

impl ResamplerActor {
    pub fn new(core: ResamplerCore, next: Addr<WsForwarderActor>, listen: ListenTap) -> Self {
        let core = (!core.is_passthrough()).then_some(core);
        Self { core, next, listen }
    }

    /// Hands target-format PCM to the listeners (free when there are none) and on to the
    /// forwarder.
    fn emit(&self, pcm: Pcm) {
        self.listen.publish(&pcm.samples);
        self.next.do_send(pcm);
    }
}

impl Actor for ResamplerActor {
    type Context = Context<Self>;
}

impl Handler<Pcm> for ResamplerActor {
    type Result = ();

    fn handle(&mut self, msg: Pcm, _: &mut Self::Context) {
        let Some(core) = self.core.as_mut() else {
            self.emit(msg);
            return;
        };
        let mut out = Vec::with_capacity(msg.samples.len());
        core.process(&msg.samples, &mut out);
        if !out.is_empty() {
            self.emit(Pcm {
                samples: out,
                arrival: msg.arrival,
            });
        }
    }
}

impl Handler<Drain> for ResamplerActor {
    type Result = ();

    fn handle(&mut self, msg: Drain, ctx: &mut Self::Context) {
        self.next.do_send(msg);
        ctx.stop();
    }
}
