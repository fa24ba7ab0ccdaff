//! The task behind one test-source session: waits for the client to connect, holds back RTP
//! for `delay_start`, then turns the shared encoded frames into this session's packets (own
//! sequence numbers and timestamps, own misbehaviour) until it is deleted, dropped, its
//! client is blocked, or the transport ends. However it ends, the peer connection is simply
//! closed: no RTCP BYE and no HTTP signal, as SRS does.

use std::sync::Arc;
use std::time::Duration;

use rand::rngs::SmallRng;
use rand::SeedableRng;
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::watch;
use tokio::time::Instant;

use super::behaviour::Behaviour;
use super::hub::ToneHub;
use super::registry::{Phase, Registry, SessionEntry, Stop};
use super::shaper::{Flow, Shaper, Verdict};
use crate::rtc::sender::{SendSession, TransportState};

/// Everything a session task owns.
pub(crate) struct Session {
    pub entry: Arc<SessionEntry>,
    pub registry: Arc<Registry>,
    pub hub: ToneHub,
    pub rtc: SendSession,
    pub behaviour: Behaviour,
    pub connect_timeout: Duration,
    /// When the answer was made (`delay_start` counts from here).
    pub answered: Instant,
}

/// Why a session ended.
enum End {
    /// Deleted, shut down or blocked from outside.
    Stopped(Stop),
    Transport(TransportState),
    ConnectTimeout,
    /// `drop_after`.
    Dropped,
    Encoder(String),
}

impl std::fmt::Display for End {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Stopped(why) => write!(f, "{why}"),
            Self::Transport(st) => write!(f, "transport {st:?}"),
            Self::ConnectTimeout => f.write_str("client never connected"),
            Self::Dropped => f.write_str("dropped (drop_after)"),
            Self::Encoder(e) => write!(f, "encoder: {e}"),
        }
    }
}

/// Runs the session to its end, then closes the connection and unregisters it.
pub(crate) async fn run(s: Session) {
    let end = drive(&s).await;
    s.rtc.close().await;
    s.registry.remove(&s.entry.id);
    tracing::info!(
        id = %s.entry.id,
        stream = %s.entry.name,
        packets = s.entry.packets_sent(),
        reason = %end,
        "testsrc session ended"
    );
}

fn is_gone(st: &TransportState) -> bool {
    matches!(st, TransportState::Failed | TransportState::Closed)
}

/// Resolves with the reason once the session is cancelled. (Helpers like this one turn the
/// watch `Ref`s into plain values, so no lock guard lives across an await and the task stays
/// `Send`.)
async fn cancelled(rx: &mut watch::Receiver<Option<Stop>>) -> Stop {
    rx.wait_for(Option::is_some)
        .await
        .ok()
        .and_then(|stop| *stop)
        // The sender lives in the entry this task holds, so this is unreachable; ending is
        // the safe answer anyway.
        .unwrap_or(Stop::Shutdown)
}

/// Resolves with the final state once the transport failed or closed.
async fn transport_gone(rx: &mut watch::Receiver<TransportState>) -> TransportState {
    rx.wait_for(is_gone)
        .await
        .map(|st| *st)
        .unwrap_or(TransportState::Closed)
}

/// Resolves with the state once connected, failed or closed.
async fn transport_settled(rx: &mut watch::Receiver<TransportState>) -> TransportState {
    rx.wait_for(|st| *st == TransportState::Connected || is_gone(st))
        .await
        .map(|st| *st)
        .unwrap_or(TransportState::Closed)
}

async fn drive(s: &Session) -> End {
    let mut cancel = s.entry.cancelled();
    let mut state = s.rtc.state();

    s.entry.set_phase(Phase::Connecting);
    let connected = tokio::time::timeout(s.connect_timeout, transport_settled(&mut state));
    tokio::select! {
        why = cancelled(&mut cancel) => return End::Stopped(why),
        r = connected => match r {
            Err(_) => return End::ConnectTimeout,
            Ok(TransportState::Connected) => {}
            Ok(st) => return End::Transport(st),
        }
    }

    if let Some(delay) = s.behaviour.delay_start {
        s.entry.set_phase(Phase::Waiting);
        tokio::select! {
            why = cancelled(&mut cancel) => return End::Stopped(why),
            st = transport_gone(&mut state) => return End::Transport(st),
            _ = tokio::time::sleep_until(s.answered + delay) => {}
        }
    }

    // Subscribing only now means no encoder runs for sessions that are not sending yet.
    let mut frames =
        match s
            .hub
            .subscribe(s.behaviour.freq, s.behaviour.freq_r, s.behaviour.fec_pct)
        {
            Ok(rx) => rx,
            Err(e) => return End::Encoder(e.to_string()),
        };
    let mut shaper = Shaper::new(&s.behaviour, SmallRng::from_rng(&mut rand::rng()));
    let mut out = Vec::with_capacity(2);
    let mut last_index: Option<u64> = None;
    s.entry.set_phase(Phase::Sending);
    loop {
        tokio::select! {
            biased;
            why = cancelled(&mut cancel) => return End::Stopped(why),
            st = transport_gone(&mut state) => return End::Transport(st),
            r = frames.recv() => match r {
                Ok(frame) => {
                    let missed = last_index
                        .map_or(0, |l| frame.index.saturating_sub(l + 1))
                        .min(u64::from(u32::MAX)) as u32;
                    last_index = Some(frame.index);
                    if shaper.on_frame(missed, frame.payload, &mut out) == Verdict::Drop {
                        return End::Dropped;
                    }
                    for p in out.drain(..) {
                        match s.rtc.write_packet(p.seq, p.timestamp, p.payload).await {
                            Ok(()) => s.entry.count_sent(),
                            Err(e) => tracing::debug!(id = %s.entry.id, error = %e, "RTP write failed"),
                        }
                    }
                    s.entry.set_phase(match shaper.flow() {
                        Flow::Sending => Phase::Sending,
                        Flow::Silent => Phase::Silent,
                    });
                }
                // The next frame's index tells the shaper how many were missed.
                Err(RecvError::Lagged(n)) => {
                    tracing::debug!(id = %s.entry.id, missed = n, "session fell behind the encoder");
                }
                Err(RecvError::Closed) => return End::Encoder("encoder stopped".to_owned()),
            }
        }
    }
}
