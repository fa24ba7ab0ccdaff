//! `whep-bridge serve`: a node — HTTP API plus the streams it runs (single node, embedded
//! coordination; the Redis cluster comes later).

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use crate::node::{service, unknown_env_vars, NodeConfig};
use crate::telemetry::{init_logging, LogFormat};

/// How long streams get to stop (WHEP DELETE, flush, WS close) on SIGTERM/Ctrl-C.
pub(crate) const DRAIN_GRACE: Duration = Duration::from_secs(8);

#[derive(Args, Debug, Clone)]
pub struct ServeArgs {
    /// TOML configuration file (keys: `whep-bridge serve --print-config`).
    #[arg(long, env = "WHEP_BRIDGE_CONFIG")]
    pub config: Option<PathBuf>,
    /// HTTP API address (overrides api.listen).
    #[arg(long)]
    pub listen: Option<String>,
    /// Node id (overrides node.id).
    #[arg(long)]
    pub node_id: Option<String>,
    /// Print the documented defaults as TOML and exit.
    #[arg(long)]
    pub print_config: bool,
}

/// Runs a node; `log_format` (the flag) wins over the config's `node.log_format`.
pub fn run(args: ServeArgs, log_format: Option<LogFormat>) -> Result<(), String> {
    if args.print_config {
        print!("{}", crate::node::render_defaults());
        return Ok(());
    }
    let mut overrides: Vec<(&str, &str)> = Vec::new();
    if let Some(l) = &args.listen {
        overrides.push(("api.listen", l));
    }
    if let Some(n) = &args.node_id {
        overrides.push(("node.id", n));
    }
    let cfg = NodeConfig::load(args.config.as_deref(), std::env::vars(), &overrides)
        .map_err(|e| format!("invalid configuration: {e}"))?;
    init_logging(log_format.unwrap_or_else(|| cfg.node.log_format.into()));
    let env_names: Vec<String> = std::env::vars().map(|(k, _)| k).collect();
    for var in unknown_env_vars(env_names.iter().map(String::as_str)) {
        tracing::warn!(%var, "ignoring unknown WHEP_BRIDGE_* environment variable");
    }
    actix::System::new().block_on(async move {
        let mut node = service::start(cfg).await?;
        let why = tokio::select! {
            why = node.failed() => return Err(why),
            why = super::shutdown_signal() => why,
        };
        tracing::info!(reason = why, "draining");
        node.shutdown(DRAIN_GRACE).await;
        Ok(())
    })
}
