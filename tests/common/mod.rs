//! Shared helpers for whep-bridge's integration tests (`mod common;` in each test file).
//!
//! One concept per submodule:
//! - [`net`]: free loopback ports, a dependency-free HTTP GET, `wait_http_ok`.
//! - [`node`]: `Node`, a `whep-bridge serve` process with API helpers; `assert_problem`.
//! - [`redis`]: `RedisServer`, a real `redis-server` on a free port.
//! - [`cluster`]: nodes on one Redis, extended-envelope streams, per-stream chunks at the sink.
//! - [`process`]: `ChildGuard` (kill-on-drop child with captured logs) and `bin_path`.
//! - [`interop`]: start the independent aiortc WHEP source (`tests/interop/aiortc_whep.py`).
//! - [`ws_sink`]: `WsSink`, a recording WebSocket consumer that can drop/refuse connections.
//! - [`audio`]: seed-envelope decoding (strict SPEC §4.1 check) and PCM utilities.
//! - [`testsrc`]: start `whep-bridge testsrc` as a process.
//! - [`tone`]: reference tones and a real Opus round trip (the product's exact path).
//! - [`spectrum`]: `dominant_frequencies` (sub-0.1 Hz accurate) and `tone_amplitude`.
//! - [`continuity`]: `continuity_report`, sample-accurate gap/slip/glitch detection.
//!
//! Every test binary compiles this whole module but uses only part of it, hence the blanket
//! `dead_code`/`unused_imports` allowance. `tests/harness_selftest.rs` proves the helpers.
#![allow(dead_code, unused_imports)]

pub mod audio;
pub mod cluster;
pub mod continuity;
pub mod interop;
pub mod net;
pub mod node;
pub mod process;
pub mod redis;
pub mod spectrum;
pub mod tcp_proxy;
pub mod testsrc;
pub mod tone;
pub mod ws_sink;

pub use audio::{decode_seed, decode_seed_by_stream, decode_seed_json, SeedChunk, SeedMeta};
pub use continuity::{
    continuity_report, continuity_report_with, Continuity, ContinuityConfig, OPUS_WARMUP_MS,
};
pub use interop::AiortcWhep;
pub use net::{free_port, free_udp_port, http_get, http_request, wait_http_ok, wait_http_ok_async};
pub use process::{bin_path, ChildGuard};
pub use spectrum::{dominant_frequencies, tone_amplitude};
pub use ws_sink::{WsConnection, WsMessage, WsPayload, WsSink};
