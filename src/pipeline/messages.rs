//! Messages between the actors of one stream's chain.

use std::time::Instant;

use actix::Message;
use serde::Serialize;

use super::packet::RtpPacket;

/// WhepPeerActor → DecoderActor: one received RTP packet.
#[derive(Message)]
#[rtype(result = "()")]
pub struct RtpIn(pub RtpPacket);

/// DecoderActor → ResamplerActor → WsForwarderActor: interleaved PCM.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Pcm {
    pub samples: Vec<i16>,
    /// Arrival of the RTP packet these samples came from (pipeline latency).
    pub arrival: Option<Instant>,
}

/// Flows down the chain when the stream stops: each stage flushes what it holds, passes
/// this on, and the forwarder closes the WebSocket and reports [`ChainEvent::Drained`].
#[derive(Message, Clone, Copy)]
#[rtype(result = "()")]
pub struct Drain;

/// Supervisor → DecoderActor: a new WHEP session starts (new SSRC and numbering);
/// release what the reorder buffer holds and restart the media-timeout clock.
#[derive(Message)]
#[rtype(result = "()")]
pub struct SessionStarted;

/// Supervisor → WhepPeerActor: DELETE the WHEP resource and close the connection.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Teardown;

/// Stream lifecycle states (SPEC §2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StreamState {
    Starting,
    Connecting,
    Live,
    Stalled,
    Reconnecting,
    Failing,
    Stopped,
}

impl std::fmt::Display for StreamState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = match self {
            Self::Starting => "starting",
            Self::Connecting => "connecting",
            Self::Live => "live",
            Self::Stalled => "stalled",
            Self::Reconnecting => "reconnecting",
            Self::Failing => "failing",
            Self::Stopped => "stopped",
        };
        f.write_str(s)
    }
}

/// Chain actors → StreamSupervisor.
#[derive(Message, Debug)]
#[rtype(result = "()")]
pub enum ChainEvent {
    /// WHEP exchange done and ICE/DTLS connected.
    PeerConnected { session: u64 },
    /// The WHEP session failed or ended (setup error, ICE failure, DTLS close).
    PeerFailed {
        session: u64,
        error: String,
        /// False for errors that retrying cannot fix (bad URL, 4xx, no audio offered).
        retryable: bool,
    },
    /// RTP started flowing (first packet after a session start or a stall).
    MediaFlowing,
    /// No RTP for the stall timeout.
    MediaStalled,
    /// No RTP for the reconnect timeout.
    MediaTimeout,
    /// The consumer connection failed.
    ForwarderFailed { error: String },
    /// The forwarder flushed and closed after a [`Drain`].
    Drained,
}
