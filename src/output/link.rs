//! WsLinkActor: one consumer WebSocket connection, kept alive for the streams that use it
//! (SPEC §4.2).
//!
//! A link owns the socket's whole life — connect with a timeout and custom headers, ping
//! keepalive, reconnect with backoff, close handshake — and nothing about audio. Streams
//! ("clients", one [`WsForwarderActor`](super::forwarder::WsForwarderActor) each) attach to
//! it, hand it batches of frames tagged with their replay token, and get [`LinkEvent`]s back:
//! the connection is up (write your unsent chunks), down (rewind), or a pong confirmed your
//! chunks up to a token ([`AckLedger`]).
//!
//! With `wsMode: per-stream` every forwarder starts its own link, which closes when that
//! forwarder detaches. With `wsMode: shared` the node keeps one link per distinct consumer
//! URL (and handshake headers); all its streams are multiplexed on it, and it closes once it
//! is [`Retire`]d and its last client has left.
//!
//! A working connection that breaks is retried after a short random delay (so many links do
//! not reconnect in lock-step); failed attempts back off exponentially with jitter
//! ([`RetryPolicy`]). With a failure budget (`pull`), that many consecutive failed connects
//! end the link with [`LinkEvent::Failed`]; a node retries forever.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

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
use tokio::sync::oneshot;

use super::ack_ledger::{AckLedger, ClientId};
use super::envelope::WsFrame;
use crate::config::{PipelineSettings, StreamSpec};
use crate::pipeline::backoff::{Backoff, Decision, RetryPolicy};

/// The write half of a connection. Unlike a `SinkWrite` over the `Framed`, whose high-water
/// mark flushes an 8.6 kB chunk frame on its own before the ping behind it is even encoded,
/// this encodes everything written in one handler into one buffer, so a chunk and the ping
/// that confirms it leave in one TCP write: a lone ping segment would wait for the ACK of the
/// chunk (Nagle, up to the peer's 40 ms delayed ACK), widening the window in which a consumer
/// that crashes has read a chunk we still count as unconfirmed.
type WsSink = FramedWrite<Message, WriteHalf<BoxedSocket>, Codec>;

/// How long the close handshake may take.
pub const CLOSE_WAIT: Duration = Duration::from_secs(2);

/// Delay between connect attempts while a client is stopping (its stop is bounded).
const HURRY_RETRY: Duration = Duration::from_millis(250);

/// A fresh client id, unique in the process.
pub fn next_client_id() -> ClientId {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    NEXT.fetch_add(1, Relaxed)
}

/// Connection settings of one link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkConfig {
    /// Consumer URL with `{stmId}` / `{traceId}` already substituted.
    pub url: String,
    pub headers: Vec<(String, String)>,
    pub connect_timeout: Duration,
    /// Keepalive ping interval; a consumer silent for 3 intervals is considered gone.
    pub ping_interval: Duration,
    /// Reconnect backoff: first delay and cap (jittered).
    pub backoff_base: Duration,
    pub backoff_max: Duration,
    /// This many consecutive failed connects end the link; `None` retries forever.
    pub max_consecutive_failures: Option<u32>,
}

impl LinkConfig {
    pub fn for_stream(spec: &StreamSpec, settings: &PipelineSettings) -> Self {
        let mut headers = spec.ws_headers.clone();
        if !headers
            .iter()
            .any(|(k, _)| k.eq_ignore_ascii_case("user-agent"))
        {
            headers.push((
                "User-Agent".to_owned(),
                crate::config::user_agent(&settings.node),
            ));
        }
        Self {
            url: expand_url_template(&spec.ws_url, &spec.stm_id, &spec.trace_id),
            headers,
            connect_timeout: settings.timeouts.ws_connect,
            ping_interval: settings.ws_ping,
            backoff_base: settings.backoff_base,
            backoff_max: settings.backoff_max,
            max_consecutive_failures: settings.max_consecutive_failures,
        }
    }

    /// What makes two streams' connections interchangeable in `wsMode: shared`.
    pub fn share_key(&self) -> String {
        let mut key = self.url.clone();
        for (k, v) in &self.headers {
            key.push('\n');
            key.push_str(&k.to_ascii_lowercase());
            key.push(':');
            key.push_str(v);
        }
        key
    }
}

/// Substitutes `{stmId}` and `{traceId}` in a consumer URL (SPEC §4.2).
pub fn expand_url_template(template: &str, stm_id: &str, trace_id: &str) -> String {
    template
        .replace("{stmId}", stm_id)
        .replace("{traceId}", trace_id)
}

/// What a link tells its clients. `conn` identifies the connection, so a client can ignore
/// news about one it already saw go.
#[derive(Message, Debug, Clone, PartialEq, Eq)]
#[rtype(result = "()")]
pub enum LinkEvent {
    /// Connected: write your unsent chunks (tagged with this `conn`).
    Up { conn: u64 },
    /// The connection is gone: whatever was not acked must be written again.
    Down { conn: u64 },
    /// The consumer read your frames up to this replay token.
    Acked { conn: u64, token: u64 },
    /// A connect attempt failed; the link retries (with backoff).
    Retrying { error: String },
    /// The link gave up (failure budget spent); it has stopped.
    Failed { error: String },
}

/// A client joins; it gets [`LinkEvent::Up`] at once if the link is connected.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Attach {
    pub client: ClientId,
    pub events: Recipient<LinkEvent>,
}

/// Frames of one client for connection `conn` (dropped if that connection is gone), then a
/// ping whose pong acks `token`, if given.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Write {
    pub client: ClientId,
    pub conn: u64,
    pub frames: Vec<WsFrame>,
    pub token: Option<u64>,
}

/// A client is stopping: skip the backoff, retry connecting every 250 ms.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Hurry;

/// A client leaves. `done` fires when the link no longer needs the client: at once, or — if
/// it was the last client of a link that closes when idle — after the close handshake.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Detach {
    pub client: ClientId,
    pub done: oneshot::Sender<()>,
}

/// Shared links: no new clients will come; close once the last one has left.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Retire;

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

enum State {
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

pub struct WsLinkActor {
    cfg: LinkConfig,
    clients: BTreeMap<ClientId, Recipient<LinkEvent>>,
    state: State,
    /// Id of the latest connect attempt (and of the connection it produced).
    attempt: u64,
    retry: RetryPolicy,
    ledger: AckLedger,
    last_heard: Instant,
    /// The consumer is away since then.
    outage: Option<Instant>,
    /// A client is stopping: retry connecting quickly, without spending the budget.
    hurry: bool,
    /// Close as soon as no client is attached (per-stream links; retired shared links).
    close_when_idle: bool,
    /// Our Close frame is written; waiting for the consumer's.
    closing: bool,
    /// Fired when the link stops (clients waiting for the close handshake).
    waiters: Vec<oneshot::Sender<()>>,
}

impl WsLinkActor {
    /// A link for one stream (closes when that stream detaches).
    pub fn per_stream(cfg: LinkConfig) -> Self {
        Self::new(cfg, true)
    }

    /// A link shared by a node's streams for one consumer URL (closes after [`Retire`]).
    pub fn shared(cfg: LinkConfig) -> Self {
        Self::new(cfg, false)
    }

    fn new(cfg: LinkConfig, close_when_idle: bool) -> Self {
        Self {
            retry: RetryPolicy::new(
                Backoff::new(cfg.backoff_base, cfg.backoff_max),
                cfg.max_consecutive_failures,
            ),
            cfg,
            clients: BTreeMap::new(),
            state: State::Down { retry: None },
            attempt: 0,
            ledger: AckLedger::new(),
            last_heard: Instant::now(),
            outage: None,
            hurry: false,
            close_when_idle,
            closing: false,
            waiters: Vec::new(),
        }
    }

    fn url(&self) -> &str {
        redact(&self.cfg.url)
    }

    fn current_id(&self) -> Option<u64> {
        match &self.state {
            State::Up(conn) => Some(conn.id),
            _ => None,
        }
    }

    fn broadcast(&self, event: LinkEvent) {
        for client in self.clients.values() {
            client.do_send(event.clone());
        }
    }

    // ---- connecting ----

    fn connect(&mut self, ctx: &mut Context<Self>) {
        self.attempt += 1;
        let attempt = self.attempt;
        self.state = State::Connecting;
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
            if act.attempt != attempt || act.closing {
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
            if matches!(act.state, State::Down { .. }) {
                act.connect(ctx);
            }
        });
        self.state = State::Down {
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
        self.state = State::Up(Connection {
            id,
            sink,
            reader,
            proven: false,
        });
        self.last_heard = Instant::now();
        self.hurry = false;
        let streams = self.clients.len();
        match self.outage.take() {
            Some(since) => tracing::info!(
                url = %self.url(), streams,
                outage_ms = since.elapsed().as_millis() as u64,
                "consumer connected again"
            ),
            None => tracing::info!(url = %self.url(), streams, "consumer connected"),
        }
        self.broadcast(LinkEvent::Up { conn: id });
    }

    fn on_connect_failed(&mut self, failure: ConnectFailure, ctx: &mut Context<Self>) {
        self.state = State::Down { retry: None };
        self.outage.get_or_insert_with(Instant::now);
        if self.close_when_idle && self.clients.is_empty() {
            ctx.stop();
            return;
        }
        if self.hurry {
            tracing::warn!(url = %self.url(), error = %failure.message, "consumer connect failed while stopping; retrying");
            self.schedule_connect(HURRY_RETRY, ctx);
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
                tracing::warn!(url = %self.url(), %error, "giving up on the consumer");
                self.broadcast(LinkEvent::Failed { error });
                ctx.stop();
            }
            Decision::Retry { delay, attempt } => {
                tracing::warn!(
                    url = %self.url(), error = %failure.message, attempt, ?delay,
                    "consumer connect failed; retrying"
                );
                self.broadcast(LinkEvent::Retrying {
                    error: failure.message,
                });
                self.schedule_connect(delay, ctx);
            }
        }
    }

    /// The current connection is gone: tell the clients and reconnect.
    fn connection_lost(&mut self, reason: String, ctx: &mut Context<Self>) {
        if self.closing {
            // Our Close went out after everything else: a consumer that then ends the
            // connection (with or without its own Close frame) is done with it.
            tracing::debug!(url = %self.url(), %reason, "consumer ended the connection after our close");
            ctx.stop();
            return;
        }
        let State::Up(conn) = std::mem::replace(&mut self.state, State::Down { retry: None })
        else {
            return;
        };
        // Nothing of this connection may reach the actor any more.
        ctx.cancel_future(conn.reader);
        ctx.cancel_future(conn.sink.handle());
        let (id, proven) = (conn.id, conn.proven);
        drop(conn);
        self.ledger.clear();
        self.outage = Some(Instant::now());
        tracing::warn!(url = %self.url(), error = %reason, streams = self.clients.len(), "consumer disconnected");
        self.broadcast(LinkEvent::Down { conn: id });
        if self.close_when_idle && self.clients.is_empty() {
            ctx.stop();
        } else if self.hurry {
            self.connect(ctx);
        } else if proven {
            // A working connection broke: come back soon. Not a failure for the budget, and
            // the random delay keeps many links from reconnecting in lock-step.
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

    // ---- traffic ----

    fn write_ping(&mut self, id: u64) {
        if let State::Up(conn) = &mut self.state {
            conn.sink
                .write(Message::Ping(Bytes::copy_from_slice(&id.to_be_bytes())));
        }
    }

    fn on_pong(&mut self, payload: &[u8]) {
        let State::Up(conn) = &mut self.state else {
            return;
        };
        if !conn.proven {
            conn.proven = true;
            self.retry.on_success();
        }
        let conn = conn.id;
        let Ok(id) = <[u8; 8]>::try_from(payload) else {
            return;
        };
        for (client, token) in self.ledger.on_pong(u64::from_be_bytes(id)) {
            if let Some(events) = self.clients.get(&client) {
                events.do_send(LinkEvent::Acked { conn, token });
            }
        }
    }

    fn keepalive(&mut self, ctx: &mut Context<Self>) {
        if self.closing || !matches!(self.state, State::Up(_)) {
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
        let id = self.ledger.next_ping();
        self.write_ping(id);
    }

    // ---- closing ----

    /// No client left and none expected: close the connection (bounded), then stop.
    fn close_if_idle(&mut self, ctx: &mut Context<Self>) {
        if !self.close_when_idle || !self.clients.is_empty() || self.closing {
            return;
        }
        let State::Up(conn) = &mut self.state else {
            ctx.stop();
            return;
        };
        // The sink is not closed here: the consumer's Close answer (or the bound) ends it.
        conn.sink.write(Message::Close(Some(CloseReason {
            code: CloseCode::Normal,
            description: Some("stream stopped".into()),
        })));
        self.closing = true;
        ctx.run_later(CLOSE_WAIT, |act, ctx| {
            tracing::warn!(url = %act.url(), "consumer did not answer the close within {CLOSE_WAIT:?}");
            ctx.stop();
        });
    }
}

fn to_message(frame: WsFrame) -> Message {
    match frame {
        WsFrame::Text(s) => Message::Text(s.into()),
        WsFrame::Binary(b) => Message::Binary(b),
    }
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
pub fn redact(url: &str) -> &str {
    url.split('?').next().unwrap_or(url)
}

impl Actor for WsLinkActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        self.connect(ctx);
        ctx.run_interval(self.cfg.ping_interval, |act, ctx| act.keepalive(ctx));
    }

    fn stopped(&mut self, _: &mut Self::Context) {
        for waiter in self.waiters.drain(..) {
            let _ = waiter.send(());
        }
    }
}

impl Handler<Attach> for WsLinkActor {
    type Result = ();

    fn handle(&mut self, msg: Attach, _: &mut Self::Context) {
        if let Some(conn) = self.current_id() {
            if !self.closing {
                msg.events.do_send(LinkEvent::Up { conn });
            }
        }
        self.clients.insert(msg.client, msg.events);
    }
}

impl Handler<Write> for WsLinkActor {
    type Result = ();

    fn handle(&mut self, msg: Write, _: &mut Self::Context) {
        if self.closing || self.current_id() != Some(msg.conn) {
            // That connection is gone; the client got `Down` and will write these again.
            return;
        }
        if let State::Up(conn) = &mut self.state {
            for frame in msg.frames {
                conn.sink.write(to_message(frame));
            }
        }
        if let Some(token) = msg.token {
            let id = self.ledger.record(msg.client, token);
            self.write_ping(id);
        }
    }
}

impl Handler<Hurry> for WsLinkActor {
    type Result = ();

    fn handle(&mut self, _: Hurry, ctx: &mut Self::Context) {
        self.hurry = true;
        if let State::Down { retry } = &mut self.state {
            if let Some(handle) = retry.take() {
                ctx.cancel_future(handle);
            }
            self.connect(ctx);
        }
    }
}

impl Handler<Detach> for WsLinkActor {
    type Result = ();

    fn handle(&mut self, msg: Detach, ctx: &mut Self::Context) {
        self.clients.remove(&msg.client);
        self.ledger.forget(msg.client);
        if self.close_when_idle && self.clients.is_empty() {
            self.waiters.push(msg.done);
            self.close_if_idle(ctx);
        } else {
            let _ = msg.done.send(());
        }
    }
}

impl Handler<Retire> for WsLinkActor {
    type Result = ();

    fn handle(&mut self, _: Retire, ctx: &mut Self::Context) {
        self.close_when_idle = true;
        self.close_if_idle(ctx);
    }
}

impl StreamHandler<Inbound> for WsLinkActor {
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
                if let State::Up(conn) = &mut self.state {
                    conn.sink.write(Message::Pong(p));
                }
            }
            Ok(Frame::Pong(p)) => self.on_pong(&p),
            Ok(Frame::Close(reason)) => {
                if self.closing {
                    // The consumer answered our Close.
                    ctx.stop();
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

impl WriteHandler<WsProtocolError> for WsLinkActor {
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
    fn streams_share_a_link_only_with_the_same_url_and_headers() {
        let cfg = |url: &str, headers: &[(&str, &str)]| LinkConfig {
            url: url.into(),
            headers: headers
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            connect_timeout: Duration::from_secs(1),
            ping_interval: Duration::from_secs(1),
            backoff_base: Duration::from_secs(1),
            backoff_max: Duration::from_secs(1),
            max_consecutive_failures: None,
        };
        let a = cfg("ws://h/asr", &[("Authorization", "Bearer x")]);
        assert_eq!(
            a.share_key(),
            cfg("ws://h/asr", &[("authorization", "Bearer x")]).share_key()
        );
        assert_ne!(a.share_key(), cfg("ws://h/asr", &[]).share_key());
        assert_ne!(
            a.share_key(),
            cfg("ws://h/asr", &[("Authorization", "Bearer y")]).share_key()
        );
        assert_ne!(
            a.share_key(),
            cfg("ws://h/other", &[("Authorization", "Bearer x")]).share_key()
        );
    }
}
