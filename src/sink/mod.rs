//! `whep-bridge sink`: a WebSocket consumer for trying whep-bridge without a speech engine.
//! It accepts any path, understands every envelope and logs, per stream, how much audio
//! arrived and at what pace (1.000× = real time since the stream's first chunk).

pub mod tally;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::tungstenite::Message;

use tally::{ConnectionState, Tally};

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

/// Runs the sink until Ctrl-C.
pub async fn run(args: SinkArgs) -> Result<(), String> {
    let listener = TcpListener::bind(args.listen)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", args.listen))?;
    tracing::info!(addr = %args.listen, "sink listening (any path)");
    let tally = Arc::new(Mutex::new(Tally::default()));
    let report = {
        let tally = tally.clone();
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
    let accept = async {
        loop {
            match listener.accept().await {
                Ok((stream, peer)) => {
                    tokio::spawn(serve_connection(stream, peer, tally.clone()));
                }
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    };
    tokio::select! {
        _ = accept => {}
        _ = tokio::signal::ctrl_c() => {}
    }
    report.abort();
    Ok(())
}
