//! `WsSink`: a recording WebSocket consumer on 127.0.0.1 for end-to-end tests.
//!
//! It stands in for the system that receives whep-bridge's audio. Every message is kept with
//! its arrival time and the index of the connection it came on, and every handshake's path and
//! headers are kept, so tests can check envelopes, templated URLs, custom headers, replay order
//! after reconnects and pacing. It can also misbehave on request — drop all connections
//! abruptly, or refuse new ones for a while — to exercise the forwarder's buffering (SPEC §4.3).
//!
//! The server runs on its own thread with its own current-thread tokio runtime, so it works
//! the same from plain `#[test]`s, `#[tokio::test]`s and actix-rt tests, and a test runtime
//! that is blocked or shut down cannot stall it.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use tokio::sync::oneshot;
use tokio::task::AbortHandle;
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::Message;

/// What arrived in one WebSocket message.
#[derive(Debug, Clone, PartialEq)]
pub enum WsPayload {
    Text(String),
    Binary(Vec<u8>),
    /// A close frame from the client: `(code, reason)` when it carried one.
    Close(Option<(u16, String)>),
}

/// One received message.
#[derive(Debug, Clone)]
pub struct WsMessage {
    /// Index of the connection (0-based, in handshake order).
    pub conn: usize,
    pub at: Instant,
    pub payload: WsPayload,
}

impl WsMessage {
    pub fn text(&self) -> Option<&str> {
        match &self.payload {
            WsPayload::Text(t) => Some(t),
            _ => None,
        }
    }

    pub fn binary(&self) -> Option<&[u8]> {
        match &self.payload {
            WsPayload::Binary(b) => Some(b),
            _ => None,
        }
    }

    pub fn is_close(&self) -> bool {
        matches!(self.payload, WsPayload::Close(_))
    }
}

/// One accepted WebSocket connection.
#[derive(Debug, Clone)]
pub struct WsConnection {
    pub index: usize,
    /// Request target of the handshake: path plus `?query` if any.
    pub path: String,
    /// Handshake headers, names lower-cased, in request order.
    pub headers: Vec<(String, String)>,
    pub opened: Instant,
    /// When the connection ended (client close, error, or [`WsSink::close_all`]).
    pub closed: Option<Instant>,
    /// Ping frames received (tungstenite answers them with pongs automatically).
    pub pings: usize,
}

impl WsConnection {
    /// First handshake header with that (case-insensitive) name.
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.as_str())
    }
}

#[derive(Default)]
struct State {
    messages: Vec<WsMessage>,
    conns: Vec<WsConnection>,
    live: Vec<(usize, AbortHandle)>,
    refuse_until: Option<Instant>,
    /// Handshakes whose `User-Agent` contains one of these are answered 503 (a consumer one
    /// node of a cluster cannot use).
    blocked_agents: Vec<String>,
    refused: usize,
}

type Shared = Arc<Mutex<State>>;

fn lock(shared: &Shared) -> MutexGuard<'_, State> {
    // A panic while holding the lock only happens in this file's own bookkeeping; the data is
    // still usable for diagnostics, so poisoning is ignored.
    shared.lock().unwrap_or_else(|e| e.into_inner())
}

/// Recording WebSocket server; stops (and closes every connection) when dropped.
pub struct WsSink {
    addr: SocketAddr,
    shared: Shared,
    shutdown: Option<oneshot::Sender<()>>,
    thread: Option<thread::JoinHandle<()>>,
}

impl WsSink {
    /// Bind 127.0.0.1:0 and start serving on a background thread.
    pub fn start() -> Self {
        let std_listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind ws sink");
        std_listener
            .set_nonblocking(true)
            .expect("nonblocking listener");
        let addr = std_listener.local_addr().expect("ws sink addr");
        let shared: Shared = Arc::default();
        let (tx, rx) = oneshot::channel();
        let state = shared.clone();
        let thread = thread::Builder::new()
            .name("ws-sink".into())
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("ws sink runtime");
                rt.block_on(async move {
                    let listener =
                        tokio::net::TcpListener::from_std(std_listener).expect("tokio listener");
                    tokio::select! {
                        _ = rx => {}
                        _ = accept_loop(listener, state) => {}
                    }
                });
                // Dropping the runtime cancels every connection task, closing their sockets.
            })
            .expect("spawn ws sink thread");
        Self {
            addr,
            shared,
            shutdown: Some(tx),
            thread: Some(thread),
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// `ws://127.0.0.1:PORT/<path>`; any path is accepted and recorded. `path` may contain
    /// templates such as `{stmId}` — the sink does not care.
    pub fn url(&self, path: &str) -> String {
        format!("ws://{}/{}", self.addr, path.trim_start_matches('/'))
    }

    /// Snapshot of all messages so far, in arrival order.
    pub fn messages(&self) -> Vec<WsMessage> {
        lock(&self.shared).messages.clone()
    }

    /// Snapshot of the messages of one connection.
    pub fn messages_of(&self, conn: usize) -> Vec<WsMessage> {
        lock(&self.shared)
            .messages
            .iter()
            .filter(|m| m.conn == conn)
            .cloned()
            .collect()
    }

    pub fn message_count(&self) -> usize {
        lock(&self.shared).messages.len()
    }

    /// Forget every message received so far (connections are kept).
    pub fn clear_messages(&self) {
        lock(&self.shared).messages.clear();
    }

    /// Snapshot of every accepted connection (handshake completed), open or closed.
    pub fn connections(&self) -> Vec<WsConnection> {
        lock(&self.shared).conns.clone()
    }

    /// Number of completed handshakes so far.
    pub fn connection_count(&self) -> usize {
        lock(&self.shared).conns.len()
    }

    /// Connections currently open.
    pub fn open_count(&self) -> usize {
        lock(&self.shared).live.len()
    }

    /// TCP connections turned away by [`WsSink::refuse_for`].
    pub fn refused_count(&self) -> usize {
        lock(&self.shared).refused
    }

    /// Drop every open connection at once, without a close frame (an abrupt consumer crash
    /// as seen by the client: EOF on the socket).
    pub fn close_all(&self) {
        let mut st = lock(&self.shared);
        let now = Instant::now();
        let live: Vec<(usize, AbortHandle)> = st.live.drain(..).collect();
        for (index, handle) in live {
            handle.abort();
            if let Some(c) = st.conns.get_mut(index) {
                c.closed.get_or_insert(now);
            }
        }
    }

    /// For `d` from now, close every new TCP connection right after accepting it, before any
    /// handshake (the consumer is "down"). Open connections are not touched: combine with
    /// [`WsSink::close_all`] to simulate an outage.
    pub fn refuse_for(&self, d: Duration) {
        lock(&self.shared).refuse_until = Some(Instant::now() + d);
    }

    /// From now on, drop every open connection whose handshake `User-Agent` contains `agent`
    /// and answer new handshakes from it with 503: the consumer is dead for that client only
    /// (whep-bridge nodes send `... (node <id>)`).
    pub fn block_agent(&self, agent: &str) {
        let mut st = lock(&self.shared);
        st.blocked_agents.push(agent.to_owned());
        let now = Instant::now();
        let doomed: Vec<usize> = st
            .conns
            .iter()
            .filter(|c| c.header("user-agent").is_some_and(|ua| ua.contains(agent)))
            .map(|c| c.index)
            .collect();
        let mut kept = Vec::new();
        for (index, handle) in std::mem::take(&mut st.live) {
            if doomed.contains(&index) {
                handle.abort();
                if let Some(c) = st.conns.get_mut(index) {
                    c.closed.get_or_insert(now);
                }
            } else {
                kept.push((index, handle));
            }
        }
        st.live = kept;
    }

    /// Undo every [`WsSink::block_agent`].
    pub fn unblock_agents(&self) {
        lock(&self.shared).blocked_agents.clear();
    }

    /// Wait (blocking, polling) until `pred` holds for the messages; false on timeout.
    pub fn wait_until(&self, timeout: Duration, pred: impl Fn(&[WsMessage]) -> bool) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if pred(&lock(&self.shared).messages) {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// [`WsSink::wait_until`] for async tests (does not block the caller's runtime).
    pub async fn wait_until_async(
        &self,
        timeout: Duration,
        pred: impl Fn(&[WsMessage]) -> bool,
    ) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if pred(&lock(&self.shared).messages) {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Wait until at least `n` handshakes have completed; false on timeout.
    pub fn wait_connections(&self, n: usize, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if self.connection_count() >= n {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// Stop the server and close all connections. Idempotent; also done on drop.
    pub fn stop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        let mut st = lock(&self.shared);
        let now = Instant::now();
        st.live.clear();
        for c in st.conns.iter_mut() {
            c.closed.get_or_insert(now);
        }
    }
}

impl Drop for WsSink {
    fn drop(&mut self) {
        self.stop();
    }
}

async fn accept_loop(listener: tokio::net::TcpListener, shared: Shared) {
    loop {
        let Ok((stream, _peer)) = listener.accept().await else {
            // Accept errors (e.g. fd exhaustion) are transient for a test server.
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        {
            let mut st = lock(&shared);
            if st.refuse_until.is_some_and(|t| Instant::now() < t) {
                st.refused += 1;
                drop(stream);
                continue;
            }
        }
        let conn_shared = shared.clone();
        // The task registers itself (and its abort handle) once the handshake succeeded.
        let (handle_tx, handle_rx) = oneshot::channel::<AbortHandle>();
        let task = tokio::spawn(async move {
            serve_connection(stream, conn_shared, handle_rx).await;
        });
        let _ = handle_tx.send(task.abort_handle());
    }
}

async fn serve_connection(
    stream: tokio::net::TcpStream,
    shared: Shared,
    handle_rx: oneshot::Receiver<AbortHandle>,
) {
    let _ = stream.set_nodelay(true);
    let mut seen: Option<(String, Vec<(String, String)>)> = None;
    // The error type is dictated by tungstenite's `Callback`; this callback never fails.
    #[allow(clippy::result_large_err)]
    let callback = |req: &Request, resp: Response| {
        let path = req
            .uri()
            .path_and_query()
            .map_or_else(|| req.uri().to_string(), |pq| pq.as_str().to_string());
        let headers = req
            .headers()
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str().to_ascii_lowercase(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect();
        let agent = req
            .headers()
            .get("user-agent")
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
            .unwrap_or_default();
        if lock(&shared)
            .blocked_agents
            .iter()
            .any(|b| agent.contains(b.as_str()))
        {
            let mut refusal = ErrorResponse::new(Some("blocked".to_owned()));
            *refusal.status_mut() =
                tokio_tungstenite::tungstenite::http::StatusCode::SERVICE_UNAVAILABLE;
            return Err(refusal);
        }
        seen = Some((path, headers));
        Ok::<Response, ErrorResponse>(resp)
    };
    let Ok(mut ws) = tokio_tungstenite::accept_hdr_async(stream, callback).await else {
        return; // not a WebSocket client, or it went away mid-handshake
    };
    let Ok(abort) = handle_rx.await else {
        return;
    };
    let (path, headers) = seen.unwrap_or_default();
    let index = {
        let mut st = lock(&shared);
        let index = st.conns.len();
        st.conns.push(WsConnection {
            index,
            path,
            headers,
            opened: Instant::now(),
            closed: None,
            pings: 0,
        });
        st.live.push((index, abort));
        index
    };
    while let Some(item) = ws.next().await {
        let payload = match item {
            Ok(Message::Text(t)) => WsPayload::Text(t.as_str().to_string()),
            Ok(Message::Binary(b)) => WsPayload::Binary(b.to_vec()),
            Ok(Message::Close(frame)) => {
                WsPayload::Close(frame.map(|f| (u16::from(f.code), f.reason.as_str().to_string())))
            }
            Ok(Message::Ping(_)) => {
                if let Some(c) = lock(&shared).conns.get_mut(index) {
                    c.pings += 1;
                }
                continue;
            }
            Ok(Message::Pong(_)) | Ok(Message::Frame(_)) => continue,
            Err(_) => break,
        };
        lock(&shared).messages.push(WsMessage {
            conn: index,
            at: Instant::now(),
            payload,
        });
    }
    let mut st = lock(&shared);
    st.live.retain(|(i, _)| *i != index);
    if let Some(c) = st.conns.get_mut(index) {
        c.closed.get_or_insert(Instant::now());
    }
}
