//! whep-bridge: pulls live WebRTC audio over WHEP, converts it to PCM and forwards it over
//! WebSocket.
//!
//! Layout (one folder per concern, see `docs/ARCHITECTURE.md`):
//! - [`pipeline`]: the per-stream actor chain and the plain DSP cores it wraps.
//! - [`whep`]: WHEP signalling (HTTP) and URL mapping, independent of the WebRTC stack.
//! - [`rtc`]: the only module that touches webrtc-rs.
//! - [`output`]: chunking, envelopes and the WebSocket forwarder.
//! - [`testsrc`]: a synthetic WHEP source that can misbehave like SRS.
//! - [`sink`]: a WebSocket consumer that reports what it receives.

pub mod cli;
pub mod config;
pub mod output;
pub mod pipeline;
pub mod rtc;
pub mod sink;
pub mod telemetry;
pub mod testsrc;
pub mod whep;
