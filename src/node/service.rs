//! Starting and stopping a whole node: the stream registry on its arbiter pool plus the HTTP
//! API. `whep-bridge serve` runs one until a signal; `whep-bridge demo` runs one next to a
//! test source and a sink in the same process. Both need the same start-up and the same
//! drain order (streams first, so every WHEP session is deleted and every consumer
//! connection closed, then the API), so it lives here once.

use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::time::Duration;

use actix::{Actor, Addr};
use actix_web::dev::ServerHandle;
use actix_web::{web, App, HttpServer};

use crate::api::routes::{configure, ApiState};
use crate::cluster::redis::jobs::{JobReader, JobReaderSettings};
use crate::cluster::redis::RedisCoordinator;
use crate::node::arbiters::ArbiterPool;
use crate::node::jobs::RegistryJobs;
use crate::node::registry::{Shutdown, StreamRegistry};
use crate::node::NodeConfig;

/// Seconds actix-web gives in-flight requests once the API is told to stop.
const HTTP_SHUTDOWN_SECS: u64 = 2;

/// A started node. Dropping it does not stop it: call [`shutdown`](Self::shutdown).
pub struct RunningNode {
    /// The node's stream table (what the API talks to).
    pub registry: Addr<StreamRegistry>,
    /// Where the API actually listens (the real port when `api.listen` asked for port 0).
    pub addr: SocketAddr,
    handle: ServerHandle,
    /// Reads jobs from Redis (a cluster only); stopped first on shutdown.
    jobs: Option<JobReader>,
    server: actix_rt::task::JoinHandle<std::io::Result<()>>,
    /// The server task has been awaited to completion (it must not be polled again).
    server_done: bool,
}

/// Starts a node: one arbiter per core, the stream registry and the HTTP API on
/// `cfg.api.listen` (port 0 picks a free port; see [`RunningNode::addr`]).
///
/// Must run inside an actix `System` (the arbiters and the API server are started on it).
pub async fn start(cfg: NodeConfig) -> Result<RunningNode, String> {
    let listen = cfg.api.listen;
    // Bind before anything else starts: a busy port is the most common start-up failure and
    // must not leave arbiters behind; the registry also reports the real address.
    let listener =
        TcpListener::bind(listen).map_err(|e| format!("cannot listen on {listen}: {e}"))?;
    let addr = listener
        .local_addr()
        .map_err(|e| format!("cannot listen on {listen}: {e}"))?;
    let settings = cfg.to_settings();
    let defaults = cfg.to_defaults();
    let pool = ArbiterPool::per_core();
    tracing::info!(node = %settings.node, listen = %addr, arbiters = pool.len(), "starting node");
    // Where peers reach this API (the registry heartbeats it).
    let advertise = cfg.api.advertise.clone().unwrap_or_else(|| {
        if addr.ip().is_unspecified() {
            format!("{}:{}", settings.node, addr.port())
        } else {
            addr.to_string()
        }
    });
    let node_id = settings.node.clone();
    let mut registry = StreamRegistry::new(settings, defaults, advertise, pool);
    let mut job_source = None;
    if let Some(redis) = cfg.redis_settings() {
        tracing::info!(
            redis = %crate::api::spec::redact_url_str(&redis.url),
            prefix = %redis.prefix,
            "cluster coordination through Redis"
        );
        let coord = RedisCoordinator::connect_lazy(redis)
            .map_err(|e| format!("invalid configuration: redis.url: {e}"))?;
        job_source = Some((
            coord.client(),
            coord.keys().clone(),
            coord.settings().timeout,
        ));
        registry = registry
            .with_coordinator(Arc::new(coord))
            .with_handover(cfg.handover_policy());
    }
    let registry = registry.start();
    let jobs = job_source.map(|(client, keys, timeout)| {
        JobReader::spawn(
            client,
            keys,
            JobReaderSettings::new(&node_id, timeout),
            Arc::new(RegistryJobs(registry.clone())),
        )
    });
    let state = ApiState {
        registry: registry.clone(),
        token: cfg.api.token.clone(),
        max_body: cfg.api.max_body_bytes,
    };
    let server = HttpServer::new(move || {
        App::new()
            .app_data(web::Data::new(state.clone()))
            .configure(configure)
    })
    .workers(1)
    .disable_signals()
    .shutdown_timeout(HTTP_SHUTDOWN_SECS)
    .listen(listener);
    let server = match server {
        Ok(s) => s.run(),
        Err(e) => {
            // Nothing serves the streams' arbiters any more: stop them before giving up.
            if let Some(jobs) = jobs {
                jobs.shutdown().await;
            }
            let _ = registry
                .send(Shutdown {
                    grace: Duration::ZERO,
                })
                .await;
            return Err(format!("cannot listen on {listen}: {e}"));
        }
    };
    let handle = server.handle();
    let server = actix_rt::spawn(server);
    tracing::info!(listen = %addr, "API listening");
    Ok(RunningNode {
        registry,
        addr,
        handle,
        jobs,
        server,
        server_done: false,
    })
}

impl RunningNode {
    /// Resolves if the HTTP server ends by itself (it normally runs until
    /// [`shutdown`](Self::shutdown)), with the reason as an error.
    /// Cancel-safe (usable in `select!`); once it has resolved it never resolves again.
    pub async fn failed(&mut self) -> String {
        if self.server_done {
            return std::future::pending().await;
        }
        let result = (&mut self.server).await;
        self.server_done = true;
        match result {
            Ok(Ok(())) => "HTTP server stopped unexpectedly".to_owned(),
            Ok(Err(e)) => format!("HTTP server failed: {e}"),
            Err(e) => format!("HTTP server task failed: {e}"),
        }
    }

    /// Graceful stop: every stream stops (WHEP DELETE, flush, WS close) within `grace`,
    /// then the arbiters and the HTTP API stop.
    pub async fn shutdown(self, grace: Duration) {
        // No new work from Redis while the streams drain (the other nodes take the jobs);
        // the reader finishes its current read meanwhile.
        if let Some(jobs) = &self.jobs {
            jobs.stop();
        }
        let _ = self.registry.send(Shutdown { grace }).await;
        if let Some(jobs) = self.jobs {
            jobs.shutdown().await;
        }
        self.handle.stop(true).await;
        if !self.server_done {
            let _ = self.server.await;
        }
        tracing::info!("node stopped");
    }
}
