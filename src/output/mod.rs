//! The consumer side: chunking, envelopes (SPEC §4.1) and the WebSocket forwarder.

pub mod chunker;
pub mod envelope;
pub mod forwarder;
