//! `whep-bridge serve`: a node — HTTP API plus the streams it runs (single node, embedded
//! coordination; the Redis cluster comes later).

use std::path::PathBuf;
use std::time::Duration;

use actix::Actor;
use actix_web::{web, App, HttpServer};
use clap::Args;

use crate::api::routes::{configure, ApiState};
use crate::node::arbiters::ArbiterPool;
use crate::node::registry::{Shutdown, StreamRegistry};
use crate::node::{unknown_env_vars, NodeConfig};

/// How long streams get to stop (WHEP DELETE, flush, WS close) on SIGTERM/Ctrl-C.
const DRAIN_GRACE: Duration = Duration::from_secs(8);

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

pub fn run(args: ServeArgs) -> Result<(), String> {
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
    let env_names: Vec<String> = std::env::vars().map(|(k, _)| k).collect();
    for var in unknown_env_vars(env_names.iter().map(String::as_str)) {
        tracing::warn!(%var, "ignoring unknown WHEP_BRIDGE_* environment variable");
    }
    let listen = cfg.api.listen;
    let state_token = cfg.api.token.clone();
    let max_body = cfg.api.max_body_bytes;
    let settings = cfg.to_settings();
    let defaults = cfg.to_defaults();

    actix::System::new().block_on(async move {
        let pool = ArbiterPool::per_core();
        tracing::info!(node = %settings.node, %listen, arbiters = pool.len(), "starting node");
        let registry = StreamRegistry::new(settings, defaults, listen.to_string(), pool).start();
        let state = ApiState {
            registry: registry.clone(),
            token: state_token,
            max_body,
        };
        let server = HttpServer::new(move || {
            App::new()
                .app_data(web::Data::new(state.clone()))
                .configure(configure)
        })
        .workers(1)
        .disable_signals()
        .shutdown_timeout(2)
        .bind(listen)
        .map_err(|e| format!("cannot listen on {listen}: {e}"))?
        .run();
        let handle = server.handle();
        tracing::info!(%listen, "API listening");
        let why = tokio::select! {
            r = server => return r.map_err(|e| format!("HTTP server failed: {e}")),
            why = super::shutdown_signal() => why,
        };
        tracing::info!(reason = why, "draining");
        let _ = registry.send(Shutdown { grace: DRAIN_GRACE }).await;
        handle.stop(true).await;
        tracing::info!("node stopped");
        Ok(())
    })
}
