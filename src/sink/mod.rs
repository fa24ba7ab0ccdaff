//! `whep-bridge sink`: a WebSocket consumer for trying whep-bridge without a speech engine.
//! It accepts any path, understands every envelope and logs, per stream, how much audio
//! arrived and at what pace (1.000× = real time since the stream's first chunk).
//!
//! [`start`] runs it inside another program (`whep-bridge demo`) and exposes the tally;
//! [`run`] is the command. With `extended` envelopes it also follows each stream's owner
//! `node` and `epoch` and the audio gap at every takeover; `--report-json` writes all of it
//! to a file that scripts (the `cluster/drill.sh` failover drill) read while the sink runs.

pub mod tally;

use std::collections::BTreeMap;
use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
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
    /// Also write every stream's tally as one JSON object to this file on every report tick
    /// (replaced atomically: readers never see a partial file).
    #[arg(long, value_name = "PATH")]
    pub report_json: Option<PathBuf>,
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
/// every `--report-every` seconds, and the `--report-json` file if asked for (written once
/// more at exit, so it ends with the final counts).
pub async fn run(args: SinkArgs) -> Result<(), String> {
    let sink = start(args.listen).await?;
    let report = {
        let tally = sink.tally();
        let json_path = args.report_json.clone();
        let every = Duration::from_secs(args.report_every.max(1));
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            loop {
                // The first tick is immediate: the JSON file exists (`{}`) as soon as the
                // sink listens, so a script can wait for it.
                tick.tick().await;
                let doc = {
                    let Ok(t) = tally.lock() else { return };
                    log_report(&t);
                    json_path.as_ref().map(|_| t.report_json(Instant::now()))
                };
                if let (Some(path), Some(doc)) = (&json_path, doc) {
                    write_report(path, &doc);
                }
            }
        })
    };
    let _ = tokio::signal::ctrl_c().await;
    report.abort();
    sink.stop();
    if let Some(path) = &args.report_json {
        if let Ok(t) = sink.tally.lock() {
            write_report(path, &t.report_json(Instant::now()));
        }
    }
    Ok(())
}

/// One `received` line per stream.
fn log_report(t: &Tally) {
    for (id, s) in &t.streams {
        tracing::info!(
            stm_id = %id, chunks = s.chunks, audio_s = format_args!("{:.1}", s.seconds),
            rate = s.sample_rate, channels = s.channels, seq_gaps = s.seq_gaps,
            pace = format_args!("{:.3}x real time", s.pace()),
            node = s.node.as_deref().unwrap_or("-"),
            epoch = s.epoch.unwrap_or(0),
            owner_changes = s.owner_changes,
            stale_chunks = s.stale_chunks,
            max_gap_ms = s.max_gap.as_millis(),
            takeover_gaps_ms = ?s.takeover_gaps_ms(),
            "received"
        );
    }
}

/// Writes the report file, logging (not failing on) errors: a full disk must not stop the
/// sink from consuming audio. The file is small (about 300 bytes per stream), so the
/// blocking write costs less than handing it to another thread.
fn write_report(path: &Path, doc: &serde_json::Value) {
    if let Err(e) = write_atomically(path, doc.to_string().as_bytes()) {
        tracing::warn!(path = %path.display(), error = %e, "cannot write the JSON report");
    }
}

/// Writes `bytes` to a temporary file beside `path`, then renames it over `path`: a reader
/// sees the old file or the new one, never a partial one (rename is atomic within a
/// directory).
fn write_atomically(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::other("the report path names no file"))?;
    let mut tmp_name = name.to_os_string();
    tmp_name.push(format!(".tmp.{}", std::process::id()));
    let tmp = path.with_file_name(tmp_name);
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path).inspect_err(|_| {
        let _ = std::fs::remove_file(&tmp);
    })
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

    #[test]
    fn report_file_is_replaced_whole_and_no_temp_file_is_left() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("report.json");
        write_atomically(&path, b"{\"a\":1}").unwrap();
        write_atomically(&path, b"{}").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"{}");
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["report.json"]);
        assert!(write_atomically(dir.path().join("missing/r.json").as_path(), b"{}").is_err());
        assert!(write_atomically(Path::new("/"), b"{}").is_err());
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
