//! WsForwarderActor: PCM in, envelopes out over a WebSocket that survives consumer outages
//! (SPEC §4.2, §4.3).
//!
//! Chunking, envelopes and buffering are the plain [`Chunker`], [`EnvelopeEncoder`] and
//! [`ReplayBuffer`]; this actor only moves chunks between them and the socket, and owns the
//! connection's life: connect with a timeout and custom headers, ping keepalive, reconnect
//! with backoff, close handshake on drain.
//!
//! Every chunk passes through the [`ReplayBuffer`] and stays there until the consumer has
//! confirmed it (see the [`replay`](super::replay) module docs for what "sent" means): the
//! forwarder writes a ping carrying the next `seq` after every batch of chunks, and the pong
//! proves the consumer read everything before it. When the connection closes, breaks, or the
//! consumer stops answering (3 ping intervals without any frame), the unconfirmed chunks are
//! rewound and the forwarder reconnects — a working connection that broke is retried after a
//! short random delay, failed attempts back off exponentially with jitter ([`RetryPolicy`]).
//! Meanwhile audio keeps accumulating in the buffer (bounded, default 30 s; the oldest is
//! dropped and counted beyond). On reconnect the buffer is written first, in order, as one
//! burst, then the stream continues live. `seq` continues across connections, and with the
//! `binary` envelope every connection starts with a start frame carrying the `seq` of the
//! first chunk that follows.
//!
//! With a failure budget (`pull`), that many consecutive failed connects end the stream with
//! [`ChainEvent::ForwarderFailed`]; a node retries forever.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use actix::io::{FramedWrite, WriteHandler};
use actix::prelude::*;
use actix_codec::{Framed, FramedParts};
use awc::error::{SendRequestError, WsClientError, WsProtocolError};
use awc::http::StatusCode;
use awc::ws::{CloseCode, CloseReason, Codec, Frame, Message};
use awc::BoxedSocket;
use bytes::Bytes;
use futures_util::stream::{self, StreamExt};
use tokio::io::WriteHalf;

use super::chunker::{Chunk, Chunker};
use super::envelope::{EnvelopeEncoder, StreamIdentity, WsFrame};
use super::replay::ReplayBuffer;
use crate::config::{OutputFormat, PipelineSettings, StreamSpec};
use crate::pipeline::backoff::{Backoff, Decision, RetryPolicy};
use crate::pipeline::messages::{ChainEvent, Drain, Pcm};
use crate::pipeline::stats::StreamStats;

/// The write half of a connection. Unlike a `SinkWrite` over the `Framed`, whose high-water
/// mark flushes an 8.6 kB chunk frame on its own before the ping behind it is even encoded,
/// this encodes everything written in one handler into one buffer, so a chunk and the ping
/// that confirms it leave in one TCP write: a lone ping segment would wait for the ACK of the
/// chunk (Nagle, up to the peer's 40 ms delayed ACK), widening the window in which a consumer
/// that crashes has read a chunk we still count as unconfirmed.
type WsSink = FramedWrite<Message, WriteHalf<BoxedSocket>, Codec>;

/// Audio held for an absent consumer (SPEC §4.3 default).
pub const DEFAULT_REPLAY_BOUND: Duration = Duration::from_secs(30);

/// How long the close handshake at stop may take.
const CLOSE_WAIT: Duration = Duration::from_secs(2);

/// Delay between connect attempts while stopping (the stop itself is bounded).
const DRAIN_RETRY: Duration = Duration::from_millis(250);

/// Consumer-side settings of one forwarder.
#[derive(Debug, Clone)]
pub struct ForwarderConfig {
    /// Consumer URL with `{stmId}` / `{traceId}` already substituted.
    pub url: String,
    pub headers: Vec<(String, String)>,
    pub format: OutputFormat,
    pub connect_timeout: Duration,
    /// Keepalive ping interval; a consumer silent for 3 intervals is considered gone.
    pub ping_interval: Duration,
    /// Most audio held while the consumer is away (oldest dropped beyond).
    pub replay_bound: Duration,
    /// Reconnect backoff: first delay and cap (jittered).
    pub backoff_base: Duration,
    pub backoff_max: Duration,
    /// This many consecutive failed connects end the stream; `None` retries forever.
    pub max_consecutive_failures: Option<u32>,
}

impl ForwarderConfig {
    pub fn for_stream(spec: &StreamSpec, settings: &PipelineSettings) -> Self {
        Self {
            url: expand_url_template(&spec.ws_url, &spec.stm_id, &spec.trace_id),
            headers: spec.ws_headers.clone(),
            format: spec.output,
            connect_timeout: settings.timeouts.ws_connect,
            ping_interval: settings.ws_ping,
            replay_bound: settings.replay_buffer,
            backoff_base: settings.backoff_base,
            backoff_max: settings.backoff_max,
            max_consecutive_failures: settings.max_consecutive_failures,
        }
    }
}

/// Substitutes `{stmId}` and `{traceId}` in a consumer URL (SPEC §4.2).
pub fn expand_url_template(template: &str, stm_id: &str, trace_id: &str) -> String {
    template
        .replace("{stmId}", stm_id)
        .replace("{traceId}", trace_id)
}

/// What the read half of a connection yields, tagged with the connection's id so that
/// anything still in flight from a replaced connection is ignored.
enum Inbound {
    Frame(u64, Result<Frame, WsProtocolError>),
    /// The read half ended (EOF or reset).
    End(u64),
}

struct Connection {
    id: u64,
    sink: WsSink,
    reader: SpawnHandle,
    /// A pong came back: the consumer is really there (the failure budget starts over).
    proven: bool,
}

enum Link {
    /// No connection; `retry` is the scheduled next attempt, if any.
    Down {
        retry: Option<SpawnHandle>,
    },
    Connecting,
    Up(Connection),
}

/// A failed connect attempt.
struct ConnectFailure {
    message: String,
    /// False for errors that retrying cannot fix (bad URL, 4xx answer).
    retryable: bool,
}

/// The consumer is away since `since`; `dropped_before` is the drop count at that moment.
struct Outage {
    since: Instant,
    dropped_before: u64,
}

pub struct WsForwarderActor {
    cfg: ForwarderConfig,
    chunker: Chunker,
    encoder: EnvelopeEncoder,
    buffer: ReplayBuffer,
    link: Link,
    /// Id of the latest connect attempt (and of the connection it produced).
    attempt: u64,
    retry: RetryPolicy,
    chunk_buf: Vec<Chunk>,
    stats: Arc<StreamStats>,
    supervisor: Recipient<ChainEvent>,
    last_heard: Instant,
    outage: Option<Outage>,
    /// The bound dropped audio during the current outage (warned once per outage).
    drop_warned: bool,
    /// Set by [`Drain`]: give up reaching the consumer after this instant.
    drain_deadline: Option<Instant>,
    /// Our Close frame is written; waiting for the consumer's.
    closing: bool,
    /// `Drained` or `ForwarderFailed` was reported.
    done: bool,
}

impl WsForwarderActor {
    pub fn new(
        cfg: ForwarderConfig,
        identity: StreamIdentity,
        stats: Arc<StreamStats>,
        supervisor: Recipient<ChainEvent>,
    ) -> Self {
        Self {
            chunker: Chunker::new(&cfg.format),
            encoder: EnvelopeEncoder::new(cfg.format.envelope, identity, &cfg.format),
            buffer: ReplayBuffer::new(cfg.replay_bound, cfg.format.sample_rate),
            retry: RetryPolicy::new(
                Backoff::new(cfg.backoff_base, cfg.backoff_max),
                cfg.max_consecutive_failures,
            ),
            cfg,
            link: Link::Down { retry: None },
            attempt: 0,
            chunk_buf: Vec::new(),
            stats,
            supervisor,
            last_heard: Instant::now(),
            outage: None,
            drop_warned: false,
            drain_deadline: None,
            closing: false,
            done: false,
        }
    }

    fn url(&self) -> &str {
        redact(&self.cfg.url)
    }

    fn current_id(&self) -> Option<u64> {
        match &self.link {
            Link::Up(conn) => Some(conn.id),
            _ => None,
        }
    }

    // ---- connecting ----

    fn connect(&mut self, ctx: &mut Context<Self>) {
        if self.done {
            return;
        }
        self.attempt += 1;
        let attempt = self.attempt;
        self.link = Link::Connecting;
        let mut req = awc::Client::new().ws(self.cfg.url.as_str());
        for (k, v) in &self.cfg.headers {
            req = req.header(k.as_str(), v.as_str());
        }
        let timeout = self.cfg.connect_timeout;
        let url = self.url().to_owned();
        async move {
            match tokio::time::timeout(timeout, req.connect()).await {
                Ok(Ok((_resp, framed))) => Ok(framed),
                Ok(Err(e)) => Err(ConnectFailure {
                    message: format!("WebSocket connect to {url} failed: {}", describe(&e)),
                    retryable: is_retryable(&e),
                }),
                Err(_) => Err(ConnectFailure {
                    message: format!("WebSocket connect to {url} timed out after {timeout:?}"),
                    retryable: true,
                }),
            }
        }
        .into_actor(self)
        .map(move |res, act, ctx| {
            if act.done || act.attempt != attempt {
                return;
            }
            match res {
                Ok(framed) => act.on_connected(framed, ctx),
                Err(failure) => act.on_connect_failed(failure, ctx),
            }
        })
        .spawn(ctx);
    }

    fn schedule_connect(&mut self, delay: Duration, ctx: &mut Context<Self>) {
        let handle = ctx.run_later(delay, |act, ctx| {
            if matches!(act.link, Link::Down { .. }) {
                act.connect(ctx);
            }
        });
        self.link = Link::Down {
            retry: Some(handle),
        };
    }

    fn on_connected(&mut self, framed: Framed<BoxedSocket, Codec>, ctx: &mut Context<Self>) {
        let id = self.attempt;
        let parts = framed.into_parts();
        let (read_half, write_half) = tokio::io::split(parts.io);
        let frames = Framed::from_parts(FramedParts::with_read_buf(
            read_half,
            parts.codec.clone(),
            parts.read_buf,
        ));
        let reader = ctx.add_stream(
            frames
                .map(move |f| Inbound::Frame(id, f))
                .chain(stream::once(async move { Inbound::End(id) })),
        );
        let sink = FramedWrite::new(write_half, parts.codec, ctx);
        self.link = Link::Up(Connection {
            id,
            sink,
            reader,
            proven: false,
        });
        self.last_heard = Instant::now();
        self.drop_warned = false;
        self.stats.ws_connects.fetch_add(1, Relaxed);
        let (replay, replay_ms) = (self.buffer.unsent(), self.buffer.unsent_ms());
        match self.outage.take() {
            Some(outage) => {
                let dropped = self.buffer.dropped() - outage.dropped_before;
                tracing::info!(
                    url = %self.url(),
                    outage_ms = outage.since.elapsed().as_millis() as u64,
                    "consumer connected again; replaying {replay} chunks ({replay_ms} ms), \
                     dropped {dropped}"
                );
            }
            None => tracing::info!(
                url = %self.url(),
                "consumer connected; replaying {replay} chunks ({replay_ms} ms), dropped 0"
            ),
        }
        let first_seq = self
            .buffer
            .first_unsent_seq()
            .unwrap_or_else(|| self.chunker.next_seq());
        if let Some(frame) = self.encoder.start_frame(first_seq) {
            self.write(frame);
        }
        self.send_unsent();
        if self.drain_deadline.is_some() {
            self.finish_drain(ctx);
        }
    }

    fn on_connect_failed(&mut self, failure: ConnectFailure, ctx: &mut Context<Self>) {
        self.link = Link::Down { retry: None };
        if let Some(deadline) = self.drain_deadline {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                self.give_up_drain(&failure.message, ctx);
            } else {
                tracing::warn!(url = %self.url(), error = %failure.message, "consumer connect failed while stopping; retrying");
                self.schedule_connect(DRAIN_RETRY.min(left), ctx);
            }
            return;
        }
        match self.retry.on_failure(failure.retryable) {
            Decision::GiveUp { failures } => {
                let error = if failure.retryable {
                    format!(
                        "{} (gave up after {failures} consecutive failures)",
                        failure.message
                    )
                } else {
                    failure.message
                };
                self.fail(error, ctx);
            }
            Decision::Retry { delay, attempt } => {
                tracing::warn!(
                    url = %self.url(), error = %failure.message, attempt, ?delay,
                    buffered_ms = self.buffer.held_ms(),
                    "consumer connect failed; retrying"
                );
                self.schedule_connect(delay, ctx);
            }
        }
    }

    /// The current connection is gone: rewind what it did not confirm and reconnect.
    fn connection_lost(&mut self, reason: String, ctx: &mut Context<Self>) {
        if self.closing {
            // Our Close went out after everything else: a consumer that then ends the
            // connection (with or without its own Close frame) has read it all.
            tracing::debug!(url = %self.url(), %reason, "consumer ended the connection after our close");
            self.buffer.confirm_all();
            self.drained(ctx);
            return;
        }
        let Link::Up(conn) = std::mem::replace(&mut self.link, Link::Down { retry: None }) else {
            return;
        };
        // Nothing of this connection may reach the actor any more.
        ctx.cancel_future(conn.reader);
        ctx.cancel_future(conn.sink.handle());
        let proven = conn.proven;
        drop(conn);
        self.closing = false;
        let unconfirmed = self.buffer.rewind();
        self.update_buffered();
        self.outage.get_or_insert(Outage {
            since: Instant::now(),
            dropped_before: self.buffer.dropped(),
        });
        tracing::warn!(
            url = %self.url(), error = %reason,
            "consumer disconnected; {} chunks ({} ms) held for replay, {unconfirmed} of them \
             written but unconfirmed",
            self.buffer.len(), self.buffer.held_ms()
        );
        if let Some(deadline) = self.drain_deadline {
            if Instant::now() < deadline {
                self.connect(ctx);
            } else {
                self.give_up_drain(&reason, ctx);
            }
        } else if proven {
            // A working connection broke: come back soon. Not a failure for the budget, and
            // the random delay keeps many streams from reconnecting in lock-step.
            let delay = self.cfg.backoff_base.mul_f64(rand::random::<f64>());
            self.schedule_connect(delay, ctx);
        } else {
            // Broke before the consumer ever answered a ping: as good as a failed connect.
            let message = format!(
                "WebSocket connection to {} broke before the consumer answered: {reason}",
                self.url()
            );
            self.on_connect_failed(
                ConnectFailure {
                    message,
                    retryable: true,
                },
                ctx,
            );
        }
    }

    // ---- moving chunks ----

    fn write(&mut self, frame: WsFrame) {
        if let Link::Up(conn) = &mut self.link {
            conn.sink.write(to_message(frame));
        }
    }

    /// Writes every unsent chunk on the current connection, then a ping whose pong will
    /// confirm them.
    fn send_unsent(&mut self) {
        if self.closing {
            return;
        }
        let Link::Up(conn) = &mut self.link else {
            self.update_buffered();
            return;
        };
        let now = unix_now();
        let mut wrote = false;
        while let Some(out) = self.buffer.next_unsent() {
            let frame = self.encoder.encode(&out.chunk, now);
            conn.sink.write(to_message(frame));
            wrote = true;
            if out.first_time {
                self.stats.chunks.fetch_add(1, Relaxed);
                self.stats
                    .bytes
                    .fetch_add(out.chunk.pcm.len() as u64, Relaxed);
                if let Some(arrival) = out.chunk.oldest_arrival {
                    self.stats
                        .record_latency(arrival.elapsed().as_micros() as u64);
                }
            }
        }
        if wrote {
            self.send_ping();
        }
        self.update_buffered();
    }

    /// A ping carrying the ack token (8 bytes, big endian), empty when nothing is in flight.
    fn send_ping(&mut self) {
        let payload = self
            .buffer
            .ack_token()
            .map(|t| Bytes::copy_from_slice(&t.to_be_bytes()))
            .unwrap_or_default();
        if let Link::Up(conn) = &mut self.link {
            conn.sink.write(Message::Ping(payload));
        }
    }

    fn on_pong(&mut self, payload: &[u8]) {
        if let Link::Up(conn) = &mut self.link {
            if !conn.proven {
                conn.proven = true;
                self.retry.on_success();
            }
        }
        if let Ok(token) = <[u8; 8]>::try_from(payload) {
            self.buffer.confirm_before(u64::from_be_bytes(token));
            self.update_buffered();
        }
    }

    fn push_chunk(&mut self, chunk: Chunk) {
        let evicted = self.buffer.push(chunk);
        if evicted.dropped > 0 {
            self.stats
                .dropped_chunks
                .fetch_add(evicted.dropped, Relaxed);
            if !self.drop_warned {
                self.drop_warned = true;
                tracing::warn!(
                    url = %self.url(), bound = ?self.cfg.replay_bound,
                    "consumer away longer than the replay bound; dropping the oldest audio"
                );
            }
        }
    }

    fn update_buffered(&self) {
        self.stats.buffered_ms.store(self.buffer.held_ms(), Relaxed);
    }

    // ---- ending ----

    fn fail(&mut self, error: String, ctx: &mut Context<Self>) {
        if self.done {
            return;
        }
        self.done = true;
        tracing::warn!(url = %self.url(), %error, "giving up on the consumer");
        self.supervisor
            .do_send(ChainEvent::ForwarderFailed { error });
        ctx.stop();
    }

    /// Connected while draining: write everything held, the stop frame and our Close. The
    /// consumer's Close answer confirms it read all of it; the wait is bounded.
    fn finish_drain(&mut self, ctx: &mut Context<Self>) {
        self.send_unsent();
        if let Some(frame) = self.encoder.stop_frame("stopped") {
            self.write(frame);
        }
        let Link::Up(conn) = &mut self.link else {
            return;
        };
        // The sink is not closed here: the consumer's Close answer (or the bound) ends it.
        conn.sink.write(Message::Close(Some(CloseReason {
            code: CloseCode::Normal,
            description: Some("stream stopped".into()),
        })));
        self.closing = true;
        let id = conn.id;
        ctx.run_later(CLOSE_WAIT, move |act, ctx| {
            if act.closing && act.current_id() == Some(id) {
                tracing::warn!(
                    url = %act.url(),
                    "consumer did not answer the close within {CLOSE_WAIT:?}; {} chunks \
                     ({} ms) unconfirmed",
                    act.buffer.len(), act.buffer.held_ms()
                );
                act.drained(ctx);
            }
        });
    }

    /// Stopping and the consumer cannot be reached: report what is lost and end.
    fn give_up_drain(&mut self, reason: &str, ctx: &mut Context<Self>) {
        let (chunks, ms) = self.buffer.abandon();
        tracing::warn!(
            url = %self.url(), error = %reason, dropped_total = self.buffer.dropped(),
            "stopping without reaching the consumer; {chunks} chunks ({ms} ms) not delivered"
        );
        self.drained(ctx);
    }

    fn drained(&mut self, ctx: &mut Context<Self>) {
        if self.done {
            return;
        }
        self.done = true;
        self.update_buffered();
        self.supervisor.do_send(ChainEvent::Drained);
        ctx.stop();
    }

    fn keepalive(&mut self, ctx: &mut Context<Self>) {
        if self.done || self.closing || !matches!(self.link, Link::Up(_)) {
            return;
        }
        let silent = self.last_heard.elapsed();
        if silent > self.cfg.ping_interval * 3 {
            self.connection_lost(
                format!("consumer sent nothing (not even a pong) for {silent:?}"),
                ctx,
            );
            return;
        }
        self.send_ping();
    }
}

fn to_message(frame: WsFrame) -> Message {
    match frame {
        WsFrame::Text(s) => Message::Text(s.into()),
        WsFrame::Binary(b) => Message::Binary(b),
    }
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or_default()
}

/// awc's own text for a refused upgrade omits the status.
fn describe(e: &WsClientError) -> String {
    match e {
        WsClientError::InvalidResponseStatus(status) => format!("consumer answered {status}"),
        other => other.to_string(),
    }
}

/// Errors that a retry cannot fix: a malformed request or a 4xx answer (but 408 and 429,
/// which ask to come back later).
fn is_retryable(e: &WsClientError) -> bool {
    match e {
        WsClientError::InvalidResponseStatus(status) => {
            !status.is_client_error()
                || matches!(
                    *status,
                    StatusCode::REQUEST_TIMEOUT | StatusCode::TOO_MANY_REQUESTS
                )
        }
        WsClientError::SendRequest(SendRequestError::Url(_) | SendRequestError::Http(_)) => false,
        _ => true,
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
        if self.drain_deadline.is_some() || self.done {
            // Upstream flushed before sending Drain; nothing may follow the stop frame.
            return;
        }
        let mut chunks = std::mem::take(&mut self.chunk_buf);
        self.chunker.push(&msg.samples, msg.arrival, &mut chunks);
        for chunk in chunks.drain(..) {
            self.push_chunk(chunk);
        }
        self.chunk_buf = chunks;
        self.send_unsent();
    }
}

impl Handler<Drain> for WsForwarderActor {
    type Result = ();

    fn handle(&mut self, _: Drain, ctx: &mut Self::Context) {
        if self.drain_deadline.is_some() || self.done {
            return;
        }
        let limit = self.cfg.connect_timeout;
        self.drain_deadline = Some(Instant::now() + limit);
        if let Some(last) = self.chunker.flush_partial() {
            self.push_chunk(last);
        }
        match &mut self.link {
            Link::Up(_) => self.finish_drain(ctx),
            Link::Connecting => {}
            Link::Down { retry } => {
                // Skip the backoff: the stop is bounded, try now.
                if let Some(handle) = retry.take() {
                    ctx.cancel_future(handle);
                }
                self.connect(ctx);
            }
        }
        ctx.run_later(limit, move |act, ctx| {
            if !act.done && !act.closing {
                act.give_up_drain(&format!("consumer not reachable within {limit:?}"), ctx);
            }
        });
    }
}

impl StreamHandler<Inbound> for WsForwarderActor {
    fn handle(&mut self, item: Inbound, ctx: &mut Self::Context) {
        let (id, item) = match item {
            Inbound::Frame(id, item) => (id, item),
            Inbound::End(id) => {
                if self.current_id() == Some(id) {
                    self.connection_lost("consumer connection lost".to_owned(), ctx);
                }
                return;
            }
        };
        if self.current_id() != Some(id) {
            return;
        }
        self.last_heard = Instant::now();
        match item {
            Ok(Frame::Ping(p)) => {
                if let Link::Up(conn) = &mut self.link {
                    conn.sink.write(Message::Pong(p));
                }
            }
            Ok(Frame::Pong(p)) => self.on_pong(&p),
            Ok(Frame::Close(reason)) => {
                if self.closing {
                    // The consumer answered our Close: it read everything before it.
                    self.buffer.confirm_all();
                    self.drained(ctx);
                } else {
                    let why = reason
                        .map(|r| format!("{:?} {}", r.code, r.description.unwrap_or_default()))
                        .unwrap_or_else(|| "no reason".to_owned());
                    self.connection_lost(format!("consumer closed the connection ({why})"), ctx);
                }
            }
            Ok(_) => {}
            Err(e) => self.connection_lost(format!("WebSocket protocol error: {e}"), ctx),
        }
    }

    /// Each connection's stream ends with [`Inbound::End`]; the actor outlives them all.
    fn finished(&mut self, _: &mut Self::Context) {}
}

impl WriteHandler<WsProtocolError> for WsForwarderActor {
    fn error(&mut self, err: WsProtocolError, ctx: &mut Self::Context) -> Running {
        // Writers of replaced connections are cancelled, so this is the current one.
        self.connection_lost(format!("WebSocket write failed: {err}"), ctx);
        Running::Stop
    }

    /// A writer ends with its connection; the actor outlives them all.
    fn finished(&mut self, _: &mut Self::Context) {}
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

    #[test]
    fn refusals_that_retrying_cannot_fix() {
        let status =
            |code: u16| WsClientError::InvalidResponseStatus(StatusCode::from_u16(code).unwrap());
        assert!(!is_retryable(&status(401)));
        assert!(!is_retryable(&status(404)));
        assert!(is_retryable(&status(429)));
        assert!(is_retryable(&status(408)));
        assert!(is_retryable(&status(503)));
        assert!(is_retryable(&WsClientError::MissingConnectionHeader));
        assert_eq!(describe(&status(403)), "consumer answered 403 Forbidden");
    }

    #[test]
    fn config_takes_the_node_settings() {
        let spec = StreamSpec {
            stm_id: "s1".into(),
            trace_id: "t1".into(),
            whep_url: "http://h/whep".into(),
            whep_token: None,
            ws_url: "ws://c/{stmId}".into(),
            ws_headers: vec![("A".into(), "b".into())],
            ice_servers: vec![],
            output: OutputFormat::default(),
            force_resample: false,
        };
        let settings = PipelineSettings {
            max_consecutive_failures: Some(3),
            backoff_base: Duration::from_millis(100),
            ..PipelineSettings::default()
        };
        let cfg = ForwarderConfig::for_stream(&spec, &settings);
        assert_eq!(cfg.url, "ws://c/s1");
        assert_eq!(cfg.max_consecutive_failures, Some(3));
        assert_eq!(cfg.backoff_base, Duration::from_millis(100));
        assert_eq!(cfg.backoff_max, settings.backoff_max);
        assert_eq!(cfg.connect_timeout, settings.timeouts.ws_connect);
        assert_eq!(cfg.ping_interval, settings.ws_ping);
        assert_eq!(cfg.replay_bound, DEFAULT_REPLAY_BOUND);
    }

    // ---- the actor against real sockets on 127.0.0.1 ----

    use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver, UnboundedSender};

    use crate::config::EnvelopeKind;

    /// Stands in for the supervisor: forwards every ChainEvent to the test.
    struct Collect(UnboundedSender<ChainEvent>);

    impl Actor for Collect {
        type Context = Context<Self>;
    }

    impl Handler<ChainEvent> for Collect {
        type Result = ();
        fn handle(&mut self, e: ChainEvent, _: &mut Self::Context) {
            let _ = self.0.send(e);
        }
    }

    const CHUNK: usize = 3_200; // 200 ms at 16 kHz mono

    fn test_cfg(url: String, budget: Option<u32>) -> ForwarderConfig {
        ForwarderConfig {
            url,
            headers: vec![],
            format: OutputFormat {
                envelope: EnvelopeKind::Extended,
                ..OutputFormat::default()
            },
            connect_timeout: Duration::from_millis(500),
            ping_interval: Duration::from_millis(100),
            replay_bound: DEFAULT_REPLAY_BOUND,
            backoff_base: Duration::from_millis(20),
            backoff_max: Duration::from_millis(100),
            max_consecutive_failures: budget,
        }
    }

    /// A loopback port with nobody listening.
    fn dead_port() -> u16 {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    }

    fn start(
        cfg: ForwarderConfig,
    ) -> (
        Addr<WsForwarderActor>,
        Arc<StreamStats>,
        UnboundedReceiver<ChainEvent>,
    ) {
        let (tx, rx) = unbounded_channel();
        let stats = Arc::new(StreamStats::default());
        let fwd = WsForwarderActor::new(
            cfg,
            StreamIdentity::default(),
            stats.clone(),
            Collect(tx).start().recipient(),
        )
        .start();
        (fwd, stats, rx)
    }

    async fn next_event(rx: &mut UnboundedReceiver<ChainEvent>, within: Duration) -> ChainEvent {
        tokio::time::timeout(within, rx.recv())
            .await
            .expect("no ChainEvent in time")
            .expect("collector gone")
    }

    /// `seq` of the next extended chunk the test server received.
    async fn next_seq(rx: &mut UnboundedReceiver<String>) -> u64 {
        let t = tokio::time::timeout(Duration::from_secs(5), rx.recv())
            .await
            .expect("no chunk in time")
            .expect("server gone");
        let v: serde_json::Value = serde_json::from_str(&t).unwrap();
        v["seq"].as_u64().unwrap()
    }

    #[test]
    fn failure_budget_ends_the_stream_with_the_connect_error() {
        let url = format!("ws://127.0.0.1:{}/x", dead_port());
        actix::System::new().block_on(async move {
            let (_fwd, _stats, mut rx) = start(test_cfg(url, Some(3)));
            match next_event(&mut rx, Duration::from_secs(5)).await {
                ChainEvent::ForwarderFailed { error } => assert!(
                    error.contains("WebSocket connect") && error.contains("3 consecutive"),
                    "{error}"
                ),
                other => panic!("unexpected {other:?}"),
            }
        });
    }

    #[test]
    fn drain_without_a_consumer_gives_up_after_the_connect_timeout() {
        let url = format!("ws://127.0.0.1:{}/x", dead_port());
        actix::System::new().block_on(async move {
            let (fwd, stats, mut rx) = start(test_cfg(url, None));
            fwd.do_send(Pcm {
                samples: vec![0; CHUNK * 5 + 100],
                arrival: None,
            });
            tokio::time::sleep(Duration::from_millis(50)).await;
            assert_eq!(stats.buffered_ms.load(Relaxed), 1_000, "5 chunks held");
            let asked = Instant::now();
            fwd.do_send(Drain);
            let ev = next_event(&mut rx, Duration::from_secs(3)).await;
            assert!(matches!(ev, ChainEvent::Drained), "{ev:?}");
            let took = asked.elapsed();
            assert!(
                took >= Duration::from_millis(450) && took < Duration::from_secs(2),
                "{took:?}"
            );
            // Nothing was dropped by the bound; what was held is given up (and logged).
            assert_eq!(stats.dropped_chunks.load(Relaxed), 0);
            assert_eq!(stats.buffered_ms.load(Relaxed), 0);
            assert_eq!(stats.chunks.load(Relaxed), 0);
        });
    }

    #[test]
    fn silent_consumer_is_replaced_and_gets_the_unconfirmed_chunks_again() {
        use tokio_tungstenite::tungstenite::Message as TMessage;

        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let url = format!("ws://{}/x", listener.local_addr().unwrap());
        let (text_tx, mut text_rx) = unbounded_channel::<String>();
        let server = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let l = tokio::net::TcpListener::from_std(listener).unwrap();
                // First consumer: handshake, then never reads again (so never pongs).
                let (s1, _) = l.accept().await.unwrap();
                let _mute = tokio_tungstenite::accept_async(s1).await.unwrap();
                // Second consumer: reads everything (tungstenite answers pings itself).
                let (s2, _) = l.accept().await.unwrap();
                let mut ws = tokio_tungstenite::accept_async(s2).await.unwrap();
                while let Some(Ok(m)) = ws.next().await {
                    if let TMessage::Text(t) = m {
                        let _ = text_tx.send(t.as_str().to_owned());
                    }
                }
            });
        });

        actix::System::new().block_on(async move {
            let (fwd, stats, mut rx) = start(test_cfg(url, None));
            let pcm = || Pcm {
                samples: vec![7; CHUNK * 3],
                arrival: None,
            };
            fwd.do_send(pcm());
            let mut seqs = Vec::new();
            // Written to the mute consumer, never confirmed: replayed on the second one.
            for _ in 0..3 {
                seqs.push(next_seq(&mut text_rx).await);
            }
            fwd.do_send(pcm());
            for _ in 0..3 {
                seqs.push(next_seq(&mut text_rx).await);
            }
            assert_eq!(seqs, vec![0, 1, 2, 3, 4, 5]);
            assert_eq!(stats.ws_connects.load(Relaxed), 2);
            // Counted once each, although 0..3 were written twice.
            assert_eq!(stats.chunks.load(Relaxed), 6);
            fwd.do_send(Drain);
            let ev = next_event(&mut rx, Duration::from_secs(3)).await;
            assert!(matches!(ev, ChainEvent::Drained), "{ev:?}");
        });
        server.join().unwrap();
    }
}
