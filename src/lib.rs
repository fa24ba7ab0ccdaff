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
//! - [`api`]: plain cores of the node's HTTP API (problem details, stream spec validation).
//! - [`cluster`]: the coordinator trait (embedded in memory; Redis for a cluster) and leases.
//! - [`node`]: the `serve` node's configuration (TOML file < env < flags).

pub mod api;
pub mod cli;
pub mod cluster;
pub mod config;
pub mod node;
pub mod output;
pub mod pipeline;
pub mod rtc;
pub mod sink;
pub mod telemetry;
pub mod testsrc;
pub mod whep;
