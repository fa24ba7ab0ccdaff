//! Synthetic WHEP source (SPEC §5 `testsrc`): Opus 48 kHz stereo tones over WebRTC, with
//! SRS-like misbehaviour on demand, for trying and testing whep-bridge without SRS.
//!
//! Layout: [`config`] (CLI flags), [`behaviour`] (per-session options from the query
//! string), [`http`] (a minimal HTTP/1.1 server that can fail the SRS way), `routes` (URL
//! dialects), [`tone`] + `hub` (one shared Opus encoder per tone pair), [`packetizer`] +
//! [`shaper`] (per-session RTP numbering and misbehaviour), `session` (the per-session
//! task), [`block`] (per-client reachability rules) and `server` (the request handler). WebRTC itself is behind
//! [`crate::rtc::sender::SendSession`].
//!
//! Control routes (a loopback tool for test harnesses, no auth), to simulate a media server
//! that one node of a cluster cannot reach while the others can ([`block`]); nodes name
//! themselves in the `User-Agent` of their WHEP POST (`whep-bridge/0.1.0 (node node-a)`):
//! - `POST /control/block?agent=SUB`: from now on every play POST whose `User-Agent`
//!   contains `SUB` (case-sensitive) is refused like any other error (`--srs-errors`: the
//!   connection is closed with no response; otherwise a plain `503` with a short text and no
//!   `Retry-After`), and every live session created with such a `User-Agent` is dropped at
//!   once, exactly like `drop_after` (peer connection closed, no BYE, no HTTP signal).
//! - `POST /control/unblock?agent=SUB` lifts that rule; `POST /control/unblock` lifts all.
//!
//! Both answer `200 {"blocked":[rules in effect],"dropped":N}`; an empty or missing `agent`
//! on block, or an empty one on unblock, is a 400, another method a 405 (reported the same
//! way as every other error). `/stats` shows each session's `userAgent`.
//!
//! Runs on any tokio runtime (multi-thread or current-thread): everything is `tokio::spawn`.

pub mod behaviour;
pub mod block;
pub mod config;
pub mod http;
mod hub;
pub mod packetizer;
mod registry;
mod routes;
mod server;
mod session;
pub mod shaper;
pub mod tone;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub use behaviour::Behaviour;
pub use config::{TestSrcArgs, TESTSRC_AFTER_HELP};
pub use registry::{Phase, SessionStats, Stats};

use crate::rtc::engine::build_api;
use crate::rtc::RtcError;
use server::Server;

/// Longest wait at shutdown for sessions to close their peer connections.
const SHUTDOWN_WAIT: Duration = Duration::from_secs(5);

/// Why the test source could not start or run.
#[derive(Debug, thiserror::Error)]
pub enum TestSrcError {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("WebRTC setup: {0}")]
    Rtc(#[from] RtcError),
    #[error("waiting for Ctrl-C: {0}")]
    Signal(#[source] std::io::Error),
}

/// A running test source. Dropping it stops accepting and cancels its sessions;
/// [`shutdown`](Self::shutdown) also waits for them to close.
pub struct TestSource {
    addr: SocketAddr,
    server: Arc<Server>,
    stop: watch::Sender<bool>,
    accept: Option<JoinHandle<()>>,
}

impl TestSource {
    /// Binds `args.listen` (port 0 picks a free port) and starts serving.
    pub async fn start(args: TestSrcArgs) -> Result<TestSource, TestSrcError> {
        let rtc = args.rtc_config();
        let api = build_api(&rtc)?;
        let bind_err = |source| TestSrcError::Bind {
            addr: args.listen,
            source,
        };
        let listener = TcpListener::bind(args.listen).await.map_err(bind_err)?;
        let addr = listener.local_addr().map_err(bind_err)?;
        let server = Arc::new(Server::new(&args, api, rtc));
        let (stop, stopped) = watch::channel(false);
        let accept = tokio::spawn(http::serve(
            listener,
            Arc::clone(&server),
            http::Limits::default(),
            stopped,
        ));
        tracing::info!(%addr, "testsrc listening");
        Ok(TestSource {
            addr,
            server,
            stop,
            accept: Some(accept),
        })
    }

    /// The bound HTTP address.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://ADDR`, the base of the WHEP URLs (`{base}/whep/{name}`).
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Live sessions (answered and not yet ended or deleted).
    pub fn sessions(&self) -> usize {
        self.server.sessions()
    }

    /// The same figures as `GET /stats`.
    pub fn stats(&self) -> Stats {
        self.server.stats()
    }

    /// Stops accepting, ends every session and waits (at most 5 s) for them to close.
    pub async fn shutdown(mut self) {
        self.stop.send_replace(true);
        if let Some(accept) = self.accept.take() {
            let _ = accept.await;
        }
        self.server.shut_down(SHUTDOWN_WAIT).await;
    }
}

impl Drop for TestSource {
    fn drop(&mut self) {
        self.stop.send_replace(true);
        self.server.begin_shutdown();
    }
}

/// Runs a test source until Ctrl-C (the `whep-bridge testsrc` command).
pub async fn run(args: TestSrcArgs) -> Result<(), TestSrcError> {
    let source = TestSource::start(args).await?;
    let waited = tokio::signal::ctrl_c().await;
    tracing::info!("testsrc shutting down");
    source.shutdown().await;
    waited.map_err(TestSrcError::Signal)
}
