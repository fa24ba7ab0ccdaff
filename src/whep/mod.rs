//! WHEP signalling (SPEC §3): URL forms, the HTTP offer/answer exchange and teardown.
//! Independent of the WebRTC stack: it moves SDP strings.

pub mod error;
pub mod sdp;
pub mod signal;
pub mod url;

pub use error::WhepError;
