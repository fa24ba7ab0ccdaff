//! WsForwarderActor: PCM in, envelopes out over one WebSocket connection (SPEC §4).
//!
//! Chunking and envelope encoding are the plain [`Chunker`] and [`EnvelopeEncoder`]; this
//! actor owns the connection: connect with a timeout, custom handshake headers, ping
//! keepalive, close handshake on drain. Chunks produced before the connection is up wait in
//! a bounded backlog. A consumer that closes or stops answering ends the stream with a
//! clear error (reconnect with replay comes with the node).

use std::collections::VecDeque;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use actix::io::{SinkWrite, WriteHandler};
use actix::prelude::*;
use actix_codec::Framed;
use awc::error::WsProtocolError;
use awc::ws::{CloseCode, CloseReason, Codec, Frame, Message};
use awc::BoxedSocket;
use futures_util::stream::{SplitSink, StreamExt};

use super::chunker::{Chunk, Chunker};
use super::envelope::{EnvelopeEncoder, StreamIdentity, WsFrame};
use crate::config::{OutputFormat, StreamSpec};
use crate::pipeline::messages::{ChainEvent, Drain, Pcm};
use crate::pipeline::stats::StreamStats;

type WsSink = SinkWrite<Message, SplitSink<Framed<BoxedSocket, Codec>, Message>>;

/// Consumer-side settings of one forwarder.
#[derive(Debug, Clone)]
pub struct ForwarderConfig {
    /// Consumer URL with `{stmId}` / `{traceId}` already substituted.
    pub url: String,
    pub headers: Vec<(String, String)>,
    pub format: OutputFormat,
    pub connect_timeout: Duration,
    pub ping_interval: Duration,
    /// Most audio held while the connection is not up yet (oldest dropped beyond).
    pub backlog: Duration,
}

impl ForwarderConfig {
    pub fn for_stream(spec: &StreamSpec, connect_timeout: Duration, ping: Duration) -> Self {
        Self {
            url: expand_url_template(&spec.ws_url, &spec.stm_id, &spec.trace_id),
            headers: spec.ws_headers.clone(),
            format: spec.output,
            connect_timeout,
            ping_interval: ping,
            backlog: Duration::from_secs(30),
        }
    }
}

/// Substitutes `{stmId}` and `{traceId}` in a consumer URL (SPEC §4.2).
pub fn expand_url_template(template: &str, stm_id: &str, trace_id: &str) -> String {
    template
        .replace("{stmId}", stm_id)
        .replace("{traceId}", trace_id)
}

pub struct WsForwarderActor {
    cfg: ForwarderConfig,
    chunker: Chunker,
    encoder: EnvelopeEncoder,
    sink: Option<WsSink>,
    backlog: VecDeque<Chunk>,
    backlog_max: usize,
    chunk_buf: Vec<Chunk>,
    stats: Arc<StreamStats>,
    supervisor: Recipient<ChainEvent>,
    last_heard: Instant,
    draining: bool,
    failed: bool,
}

impl WsForwarderActor {
    pub fn new(
        cfg: ForwarderConfig,
        identity: StreamIdentity,
        stats: Arc<StreamStats>,
        supervisor: Recipient<ChainEvent>,
    ) -> Self {
        let backlog_max =
            (cfg.backlog.as_millis() as usize / cfg.format.chunk_ms.max(1) as usize).max(1);
        Self {
            chunker: Chunker::new(&cfg.format),
            encoder: EnvelopeEncoder::new(cfg.format.envelope, identity, &cfg.format),
            cfg,
            sink: None,
            backlog: VecDeque::new(),
            backlog_max,
            chunk_buf: Vec::new(),
            stats,
            supervisor,
            last_heard: Instant::now(),
            draining: false,
            failed: false,
        }
    }

    fn fail(&mut self, error: String, ctx: &mut Context<Self>) {
        if self.failed || self.draining {
            return;
        }
        self.failed = true;
        tracing::warn!(url = %redact(&self.cfg.url), %error, "consumer connection failed");
        self.supervisor
            .do_send(ChainEvent::ForwarderFailed { error });
        ctx.stop();
    }

    fn connect(&mut self, ctx: &mut Context<Self>) {
        let mut req = awc::Client::new().ws(self.cfg.url.as_str());
        for (k, v) in &self.cfg.headers {
            req = req.header(k.as_str(), v.as_str());
        }
        let timeout = self.cfg.connect_timeout;
        let url = redact(&self.cfg.url).to_owned();
        async move {
            match tokio::time::timeout(timeout, req.connect()).await {
                Ok(Ok((_resp, framed))) => Ok(framed),
                Ok(Err(e)) => Err(format!("WebSocket connect to {url} failed: {e}")),
                Err(_) => Err(format!(
                    "WebSocket connect to {url} timed out after {timeout:?}"
                )),
            }
        }
        .into_actor(self)
        .map(|res, act, ctx| match res {
            Ok(framed) => {
                let (sink, stream) = framed.split();
                ctx.add_stream(stream);
                act.sink = Some(SinkWrite::new(sink, ctx));
                act.last_heard = Instant::now();
                tracing::info!(url = %redact(&act.cfg.url), "consumer connected");
                if let Some(frame) = act.encoder.start_frame(act.chunker.next_seq()) {
                    act.write(frame);
                }
                while let Some(chunk) = act.backlog.pop_front() {
                    act.send_chunk(&chunk);
                }
                act.update_buffered();
                if act.draining {
                    act.finish_drain(ctx);
                }
            }
            Err(e) => act.fail(e, ctx),
        })
        .spawn(ctx);
    }

    fn write(&mut self, frame: WsFrame) {
        if let Some(sink) = self.sink.as_mut() {
            let msg = match frame {
                WsFrame::Text(s) => Message::Text(s.into()),
                WsFrame::Binary(b) => Message::Binary(b),
            };
            // An error here means the sink is closed; the stream handler reports it.
            let _ = sink.write(msg);
        }
    }

    fn send_chunk(&mut self, chunk: &Chunk) {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs_f64())
            .unwrap_or_default();
        let frame = self.encoder.encode(chunk, now);
        self.write(frame);
        self.stats.chunks.fetch_add(1, Relaxed);
        self.stats.bytes.fetch_add(chunk.pcm.len() as u64, Relaxed);
        if let Some(arrival) = chunk.oldest_arrival {
            self.stats
                .record_latency(arrival.elapsed().as_micros() as u64);
        }
    }

    fn update_buffered(&self) {
        let ms = self.backlog.len() as u64 * self.cfg.format.chunk_ms as u64;
        self.stats.buffered_ms.store(ms, Relaxed);
    }

    fn dispatch(&mut self, chunks: &mut Vec<Chunk>) {
        for chunk in chunks.drain(..) {
            if self.sink.is_some() {
                self.send_chunk(&chunk);
            } else {
                if self.backlog.len() >= self.backlog_max {
                    self.backlog.pop_front();
                }
                self.backlog.push_back(chunk);
            }
        }
        self.update_buffered();
    }

    /// Flush the partial chunk, send the stop frame and start the close handshake. The
    /// actor stops when the consumer answers the Close (or after a bounded wait).
    fn finish_drain(&mut self, ctx: &mut Context<Self>) {
        let mut rest: Vec<Chunk> = self.chunker.flush_partial().into_iter().collect();
        self.dispatch(&mut rest);
        if let Some(frame) = self.encoder.stop_frame("stopped") {
            self.write(frame);
        }
        match self.sink.as_mut() {
            Some(sink) => {
                // Close handshake: the consumer answers our Close after it has read
                // everything before it; then the actor stops (see the stream handler). The
                // sink is not closed here: actix's SinkWrite may shut the socket down before
                // its queue is written when the transport applies backpressure.
                let _ = sink.write(Message::Close(Some(CloseReason {
                    code: CloseCode::Normal,
                    description: Some("stream stopped".into()),
                })));
                // Bound the handshake: a consumer that never answers cannot hold us.
                ctx.run_later(Duration::from_secs(2), |act, ctx| act.drained(ctx));
            }
            None => self.drained(ctx),
        }
    }

    fn drained(&mut self, ctx: &mut Context<Self>) {
        if !self.failed {
            self.failed = true;
            self.supervisor.do_send(ChainEvent::Drained);
        }
        ctx.stop();
    }

    fn keepalive(&mut self, ctx: &mut Context<Self>) {
        if self.sink.is_none() || self.draining {
            return;
        }
        if self.last_heard.elapsed() > self.cfg.ping_interval * 3 {
            self.fail(
                format!(
                    "consumer sent nothing (not even pong) for {:?}",
                    self.last_heard.elapsed()
                ),
                ctx,
            );
            return;
        }
        if let Some(sink) = self.sink.as_mut() {
            let _ = sink.write(Message::Ping(bytes::Bytes::new()));
        }
    }
}

/// Consumer URLs may carry credentials in the query string: never log it.
fn redact(url: &str) -> &str {
    url.split('?').next().unwrap_or(url)
}

impl Actor for WsForwarderActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        self.connect(ctx);
        ctx.run_interval(self.cfg.ping_interval, |act, ctx| act.keepalive(ctx));
    }
}

impl Handler<Pcm> for WsForwarderActor {
    type Result = ();

    fn handle(&mut self, msg: Pcm, _: &mut Self::Context) {
        let mut chunks = std::mem::take(&mut self.chunk_buf);
        self.chunker.push(&msg.samples, msg.arrival, &mut chunks);
        self.dispatch(&mut chunks);
        self.chunk_buf = chunks;
    }
}

impl Handler<Drain> for WsForwarderActor {
    type Result = ();

    fn handle(&mut self, _: Drain, ctx: &mut Self::Context) {
        if self.draining {
            return;
        }
        self.draining = true;
        if self.sink.is_some() {
            self.finish_drain(ctx);
        } else {
            // Not connected (yet): give the connect attempt a moment to deliver what we
            // hold, then give up.
            ctx.run_later(self.cfg.connect_timeout, |act, ctx| act.drained(ctx));
        }
    }
}

impl StreamHandler<Result<Frame, WsProtocolError>> for WsForwarderActor {
    fn handle(&mut self, item: Result<Frame, WsProtocolError>, ctx: &mut Self::Context) {
        self.last_heard = Instant::now();
        match item {
            Ok(Frame::Ping(p)) => {
                if let Some(sink) = self.sink.as_mut() {
                    let _ = sink.write(Message::Pong(p));
                }
            }
            Ok(Frame::Close(reason)) => {
                if self.draining {
                    self.drained(ctx);
                } else {
                    let why = reason
                        .map(|r| format!("{:?} {}", r.code, r.description.unwrap_or_default()))
                        .unwrap_or_else(|| "no reason".to_owned());
                    self.fail(format!("consumer closed the connection ({why})"), ctx);
                }
            }
            Ok(_) => {}
            Err(e) => self.fail(format!("WebSocket protocol error: {e}"), ctx),
        }
    }

    fn finished(&mut self, ctx: &mut Self::Context) {
        if self.draining {
            self.drained(ctx);
        } else {
            self.fail("consumer connection lost".to_owned(), ctx);
        }
    }
}

impl WriteHandler<WsProtocolError> for WsForwarderActor {
    fn error(&mut self, err: WsProtocolError, ctx: &mut Self::Context) -> Running {
        self.fail(format!("WebSocket write failed: {err}"), ctx);
        Running::Stop
    }

    fn finished(&mut self, ctx: &mut Self::Context) {
        if self.draining {
            self.drained(ctx);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_templates_expand() {
        assert_eq!(
            expand_url_template("ws://h/asr/{stmId}?t={traceId}", "s1", "abc"),
            "ws://h/asr/s1?t=abc"
        );
        assert_eq!(expand_url_template("ws://h/x", "s1", "abc"), "ws://h/x");
    }

    #[test]
    fn redaction_drops_query() {
        assert_eq!(redact("wss://h/p?token=secret"), "wss://h/p");
    }
}
