//! The consumer side: chunking, envelopes (SPEC §4.1), the replay buffer (SPEC §4.3) and
//! the WebSocket forwarder.

pub mod chunker;
pub mod envelope;
pub mod forwarder;
pub mod replay;
