//! ResamplerActor: converts decoder PCM to the target rate/channels with
//! [`ResamplerCore`], or passes messages through untouched when libopus already decoded
//! the target format (the common 16 kHz mono case costs one mailbox hop, no copy).

use actix::prelude::*;

use super::messages::{Drain, Pcm};
use super::resampler::ResamplerCore;
use crate::output::forwarder::WsForwarderActor;

pub struct ResamplerActor {
    /// `None` when the decoder output is already in the target format.
    core: Option<ResamplerCore>,
    next: Addr<WsForwarderActor>,
}

impl ResamplerActor {
    pub fn new(core: ResamplerCore, next: Addr<WsForwarderActor>) -> Self {
        let core = (!core.is_passthrough()).then_some(core);
        Self { core, next }
    }
}

impl Actor for ResamplerActor {
    type Context = Context<Self>;
}

impl Handler<Pcm> for ResamplerActor {
    type Result = ();

    fn handle(&mut self, msg: Pcm, _: &mut Self::Context) {
        let Some(core) = self.core.as_mut() else {
            self.next.do_send(msg);
            return;
        };
        let mut out = Vec::with_capacity(msg.samples.len());
        core.process(&msg.samples, &mut out);
        if !out.is_empty() {
            self.next.do_send(Pcm {
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
