//! The consumer side: chunking, envelopes (SPEC §4.1), the replay buffer (SPEC §4.3) and
//! the WebSocket forwarder; plus the live listen tap and its WAV framing (SPEC §5).

pub mod ack_ledger;
pub mod chunker;
pub mod envelope;
pub mod forwarder;
pub mod link;
pub mod listen;
pub mod replay;
pub mod wav;
