//! Everything that touches webrtc-rs lives here, so a later move to another WebRTC stack
//! stays contained. The rest of the crate sees plain types: SDP strings, [`RtpPacket`]s and
//! connection-state events.
//!
//! [`RtpPacket`]: crate::pipeline::packet::RtpPacket

pub mod engine;
pub mod receiver;
pub mod sender;

pub use engine::RtcError;
