//! The unit that flows from the WHEP peer to the decoder.

use std::time::Instant;

use bytes::Bytes;

/// One received RTP packet carrying Opus, reduced to what the decoder needs.
#[derive(Debug, Clone)]
pub struct RtpPacket {
    pub seq: u16,
    pub timestamp: u32,
    pub payload: Bytes,
    /// When the packet was read from the transport (for pipeline latency).
    pub arrival: Instant,
}
