//! `whep-bridge sink`: a WebSocket consumer for trying whep-bridge without a speech engine.
//! It accepts any path, understands every envelope and logs, per stream, how much audio
//! arrived and at what pace (1.000× = real time since the stream's first chunk).
//!
//! [`start`] runs it inside another program (`whep-bridge demo`) and exposes the tally;
//! [`run`] is the command.

pub mod tally;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;

use tally::{ConnectionState, StreamTally, Tally};

/// Most time a client may take to complete the WebSocket handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(clap::Args, Debug, Clone)]
pub struct SinkArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:9000")]
    pub listen: SocketAddr,
    /// Seconds between report lines.
    #[arg(long, default_value_t = 2)]
    pub report_every: u64,
}

async fn serve_connection(stream: TcpStream, peer: SocketAddr, tally: Arc<Mutex<Tally>>) {
    let ws = match tokio::time::timeout(HANDSHAKE_TIMEOUT, tokio_tungstenite::accept_async(stream))
        .await
    {
        Ok(Ok(ws)) => ws,
        Ok(Err(e)) => {
            tracing::warn!(%peer, error = %e, "WebSocket handshake failed");
            return;
        }
        Err(_) => {
            tracing::warn!(%peer, "WebSocket handshake timed out");
            return;
        }
    };
    tracing::info!(%peer, "consumer connection opened");
    let mut state = ConnectionState::default();
    // Not split: reading drives tungstenite's automatic pong and close replies, so the
    // bridge's close handshake completes at once.
    let mut ws = ws;
    while let Some(msg) = ws.next().await {
        let Ok(mut t) = tally.lock() else { return };
        match msg {
            Ok(Message::Text(text)) => t.text(&mut state, text.as_str(), Instant::now()),
            Ok(Message::Binary(b)) => t.binary(&state, b.len(), Instant::now()),
            // Keep reading after a Close: that lets tungstenite send the Close reply, then
            // the stream ends.
            Err(_) => break,
            Ok(_) => {}
        }
    }
    tracing::info!(%peer, "consumer connection closed");
}

/// A sink started with [`start`]: its address and what it has received so far.
pub struct RunningSink {
    addr: SocketAddr,
    tally: Arc<Mutex<Tally>>,
    open: Arc<AtomicUsize>,
    accept: JoinHandle<()>,
}

/// Binds `listen` (port 0 picks a free port) and accepts consumer connections on any path.
/// Must run inside a tokio runtime: every connection is a `tokio::spawn`ed task.
pub async fn start(listen: SocketAddr) -> Result<RunningSink, String> {
    let listener = TcpListener::bind(listen)
        .await
        .map_err(|e| format!("cannot listen on {listen}: {e}"))?;
    let addr = listener
        .local_addr()
        .map_err(|e| format!("cannot listen on {listen}: {e}"))?;
    tracing::info!(%addr, "sink listening (any path)");
    let tally = Arc::new(Mutex::new(Tally::default()));
    let open = Arc::new(AtomicUsize::new(0));
    let accept = tokio::spawn(accept_loop(listener, tally.clone(), open.clone()));
    Ok(RunningSink {
        addr,
        tally,
        open,
        accept,
    })
}

async fn accept_loop(listener: TcpListener, tally: Arc<Mutex<Tally>>, open: Arc<AtomicUsize>) {
    loop {
        match listener.accept().await {
            Ok((stream, peer)) => {
                let open = OpenConnection::new(open.clone());
                let tally = tally.clone();
                tokio::spawn(async move {
                    serve_connection(stream, peer, tally).await;
                    drop(open);
                });
            }
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// Counts a consumer connection as open until dropped (the task ended, however it ended).
struct OpenConnection(Arc<AtomicUsize>);

impl OpenConnection {
    fn new(count: Arc<AtomicUsize>) -> Self {
        count.fetch_add(1, Ordering::Relaxed);
        Self(count)
    }
}

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl RunningSink {
    /// The bound address (`ws://ADDR/any/path` reaches the sink).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The live tally, shared with the connection tasks (lock briefly).
    pub fn tally(&self) -> Arc<Mutex<Tally>> {
        self.tally.clone()
    }

    /// A copy of every stream's counters.
    pub fn snapshot(&self) -> BTreeMap<String, StreamTally> {
        self.tally
            .lock()
            .map(|t| t.streams.clone())
            .unwrap_or_default()
    }

    /// Consumer connections currently open (handshake accepted or in progress).
    pub fn open_connections(&self) -> usize {
        self.open.load(Ordering::Relaxed)
    }

    /// Stops accepting. Open connections end when their client closes them.
    pub fn stop(&self) {
        self.accept.abort();
    }
}

impl Drop for RunningSink {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

/// Runs the sink until Ctrl-C (the `whep-bridge sink` command): a report line per stream
/// every `--report-every` seconds.
pub async fn run(args: SinkArgs) -> Result<(), String> {
    let sink = start(args.listen).await?;
    let report = {
        let tally = sink.tally();
        let every = Duration::from_secs(args.report_every.max(1));
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.tick().await;
            loop {
                tick.tick().await;
                let Ok(t) = tally.lock() else { return };
                for (id, s) in &t.streams {
                    tracing::info!(
                        stm_id = %id, chunks = s.chunks, audio_s = format_args!("{:.1}", s.seconds),
                        rate = s.sample_rate, channels = s.channels, seq_gaps = s.seq_gaps,
                        pace = format_args!("{:.3}x real time", s.pace()),
                        "received"
                    );
                }
            }
        })
    };
    let _ = tokio::signal::ctrl_c().await;
    report.abort();
    sink.stop();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine as _;
    use futures_util::SinkExt;

    async fn wait_until(mut ok: impl FnMut() -> bool) -> bool {
        for _ in 0..200 {
            if ok() {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        false
    }

    #[tokio::test]
    async fn started_sink_tallies_chunks_and_counts_connections() {
        let sink = start("127.0.0.1:0".parse().unwrap()).await.unwrap();
        assert_ne!(sink.local_addr().port(), 0);
        let url = format!("ws://{}/any/path", sink.local_addr());
        let (mut ws, _) = tokio_tungstenite::connect_async(url.as_str())
            .await
            .unwrap();
        assert!(wait_until(|| sink.open_connections() == 1).await);
        let data = base64::engine::general_purpose::STANDARD.encode(vec![0u8; 6400]);
        let msg = format!(r#"{{"traceId":"t","stmId":"s1","timestamp":1.0,"data":"{data}"}}"#);
        for _ in 0..3 {
            ws.send(Message::text(msg.clone())).await.unwrap();
        }
        // 3 chunks of 200 ms at 16 kHz mono.
        assert!(wait_until(|| sink.snapshot().get("s1").is_some_and(|t| t.chunks == 3)).await);
        assert!((sink.snapshot()["s1"].seconds - 0.6).abs() < 1e-9);
        ws.close(None).await.unwrap();
        assert!(wait_until(|| sink.open_connections() == 0).await);
        sink.stop();
    }
}
