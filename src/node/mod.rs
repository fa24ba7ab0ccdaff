//! The node behind `whep-bridge serve` (issue 3). For now its configuration: typed sections
//! ([`config`]), the key table with the environment mapping and rendered defaults (`keys`),
//! and layered loading (`load`: TOML file < `WHEP_BRIDGE_*` environment < flags).

pub mod config;
pub mod keys;
mod load;

pub use config::{NodeConfig, FALLBACK_NODE_ID};
pub use keys::{render_defaults, unknown_env_vars};
pub use load::{ConfigError, Source};
