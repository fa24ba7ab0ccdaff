//! The node behind `whep-bridge serve`: its configuration (typed sections in [`config`], the
//! key table with the environment mapping and rendered defaults in `keys`, layered loading in
//! `load`: TOML file < `WHEP_BRIDGE_*` environment < flags), the arbiter pool that spreads
//! streams over the cores ([`arbiters`]), the stream table ([`registry`]) and
//! starting/stopping a whole node ([`service`]).

pub mod arbiters;
pub mod config;
pub mod jobs;
pub mod keys;
mod load;
pub mod registry;
pub mod service;
mod tick;

pub use config::{NodeConfig, FALLBACK_NODE_ID};
pub use keys::{render_defaults, unknown_env_vars};
pub use load::{ConfigError, Source};
