//! The per-stream chain (SPEC §2): WhepPeerActor → DecoderActor → ResamplerActor →
//! WsForwarderActor, under one StreamSupervisor. Actor files handle messages and lifecycle
//! only; the logic lives in the plain cores (`reorder`, `decoder`, `resampler`, `backoff`,
//! `watchdog`).

pub mod backoff;
pub mod decoder;
pub mod decoder_actor;
pub mod messages;
pub mod packet;
pub mod peer_actor;
pub mod reorder;
pub mod resampler;
pub mod resampler_actor;
pub mod stats;
pub mod supervisor;
pub mod watchdog;
