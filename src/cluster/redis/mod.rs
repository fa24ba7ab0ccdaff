//! RedisCoordinator: the cluster's [`Coordinator`] (SPEC §6), over one auto-reconnecting
//! connection (`ConnectionManager`, multiplexed, so concurrent calls pipeline).
//!
//! Specs live in one hash, leases are hashes with a Redis-side TTL, and every
//! read-check-write is one Lua script ([`scripts`]), so two nodes can never both believe they
//! acquired a stream. Every call is bounded by the response timeout: a Redis that does not
//! answer is a [`CoordError`], never a hang.

pub mod jobs;
pub mod keys;
pub mod scripts;

use std::sync::Arc;
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{AsyncCommands, Script};

use tokio::sync::Notify;

use super::coordinator::{BoxFuture, CoordError, Coordinator, NodeInfo, Put};
use super::handover::{Cooling, HandoverPolicy};
use super::lease::Lease;
use crate::api::spec::StreamRequest;
use keys::Keys;

/// Settings of the Redis coordinator.
#[derive(Debug, Clone)]
pub struct RedisSettings {
    /// `redis://[user:password@]host:port[/db]` (or `rediss://`).
    pub url: String,
    /// Key prefix, so several deployments can share one Redis.
    pub prefix: String,
    pub lease_ttl: Duration,
    /// A node missing heartbeats this long is no longer listed (nor counted when placing
    /// streams); the lease TTL, since such a node has lost its leases too.
    pub node_ttl: Duration,
    /// Bound on every Redis round trip (and on each connection attempt).
    pub timeout: Duration,
}

impl RedisSettings {
    pub fn new(url: &str) -> Self {
        Self {
            url: url.to_owned(),
            prefix: "whep-bridge".to_owned(),
            lease_ttl: super::embedded::LEASE_TTL,
            node_ttl: super::embedded::LEASE_TTL,
            timeout: Duration::from_millis(1_000),
        }
    }
}

struct Scripts {
    acquire: Script,
    renew: Script,
    release: Script,
    put: Script,
    remove: Script,
    hand_over: Script,
    cooling: Script,
    orphans: Script,
}

pub struct RedisCoordinator {
    client: redis::Client,
    con: ConnectionManager,
    keys: Keys,
    settings: RedisSettings,
    scripts: Scripts,
}

fn err(e: redis::RedisError) -> CoordError {
    // RedisError's text never contains the URL's password.
    CoordError(e.to_string())
}

fn ttl_ms(d: Duration) -> u64 {
    d.as_millis().max(1) as u64
}

impl RedisCoordinator {
    /// Prepares the connection without waiting for Redis: a node starts even while Redis is
    /// down, and calls fail (bounded) until it is back. Must run inside a tokio runtime.
    pub fn connect_lazy(settings: RedisSettings) -> Result<Self, CoordError> {
        let client = redis::Client::open(settings.url.as_str()).map_err(err)?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(settings.timeout))
            .set_response_timeout(Some(settings.timeout))
            .set_number_of_retries(1)
            .set_max_delay(settings.timeout);
        let con = ConnectionManager::new_lazy_with_config(client.clone(), config).map_err(err)?;
        Ok(Self {
            client,
            con,
            keys: Keys::new(&settings.prefix),
            settings,
            scripts: Scripts {
                acquire: Script::new(scripts::ACQUIRE),
                renew: Script::new(scripts::RENEW),
                release: Script::new(scripts::RELEASE),
                put: Script::new(scripts::PUT),
                remove: Script::new(scripts::REMOVE),
                hand_over: Script::new(scripts::HAND_OVER),
                cooling: Script::new(scripts::COOLING),
                orphans: Script::new(scripts::ORPHANS),
            },
        })
    }

    pub fn keys(&self) -> &Keys {
        &self.keys
    }

    /// The client (for connections of their own, e.g. the job reader's blocking reads).
    pub fn client(&self) -> redis::Client {
        self.client.clone()
    }

    pub fn settings(&self) -> &RedisSettings {
        &self.settings
    }
}

/// How long the watcher waits before subscribing again after losing Redis.
const WATCH_RETRY: Duration = Duration::from_secs(1);

/// Subscribes to the events channel and wakes `notify` on every message, for ever: a lost
/// subscription is retried every second (the periodic tick covers the gap).
async fn watch_events(
    client: redis::Client,
    channel: String,
    timeout: Duration,
    notify: Arc<Notify>,
) {
    use futures_util::StreamExt;
    loop {
        match tokio::time::timeout(timeout, client.get_async_pubsub()).await {
            Ok(Ok(mut pubsub)) => match pubsub.subscribe(&channel).await {
                Ok(()) => {
                    tracing::debug!(%channel, "watching cluster events");
                    let mut messages = pubsub.on_message();
                    while messages.next().await.is_some() {
                        notify.notify_one();
                    }
                    tracing::warn!("cluster event subscription ended; resubscribing");
                }
                Err(e) => tracing::warn!(error = %e, "cannot subscribe to cluster events"),
            },
            Ok(Err(e)) => tracing::warn!(error = %e, "cannot subscribe to cluster events"),
            Err(_) => tracing::warn!(?timeout, "cluster event subscription timed out"),
        }
        tokio::time::sleep(WATCH_RETRY).await;
    }
}

impl Coordinator for RedisCoordinator {
    fn lease_ttl(&self) -> Duration {
        self.settings.lease_ttl
    }

    fn call_timeout(&self) -> Duration {
        self.settings.timeout
    }

    fn put_stream<'a>(
        &'a self,
        request: &'a StreamRequest,
        replace: bool,
    ) -> BoxFuture<'a, Result<Put, CoordError>> {
        Box::pin(async move {
            let json = serde_json::to_string(request).map_err(|e| CoordError(e.to_string()))?;
            let mut con = self.con.clone();
            let code: i64 = self
                .scripts
                .put
                .key(self.keys.streams())
                .key(self.keys.events())
                .arg(&request.stm_id)
                .arg(json)
                .arg(u8::from(replace))
                .invoke_async(&mut con)
                .await
                .map_err(err)?;
            Ok(match code {
                1 => Put::Created,
                2 => Put::Replaced,
                3 => Put::Unchanged,
                _ => Put::Exists,
            })
        })
    }

    fn remove_stream<'a>(&'a self, stm_id: &'a str) -> BoxFuture<'a, Result<bool, CoordError>> {
        Box::pin(async move {
            let mut con = self.con.clone();
            let existed: i64 = self
                .scripts
                .remove
                .key(self.keys.streams())
                .key(self.keys.lease(stm_id))
                .key(self.keys.epoch(stm_id))
                .key(self.keys.events())
                .key(self.keys.cooldowns())
                .arg(stm_id)
                .invoke_async(&mut con)
                .await
                .map_err(err)?;
            Ok(existed == 1)
        })
    }

    fn streams(&self) -> BoxFuture<'_, Result<Vec<StreamRequest>, CoordError>> {
        Box::pin(async move {
            let mut con = self.con.clone();
            let all: Vec<(String, String)> = con.hgetall(self.keys.streams()).await.map_err(err)?;
            let mut out = Vec::with_capacity(all.len());
            for (id, json) in all {
                match serde_json::from_str::<StreamRequest>(&json) {
                    Ok(r) => out.push(r),
                    // Written by something else than a node: skip it, loudly.
                    Err(e) => {
                        tracing::warn!(stm_id = %id, error = %e, "unreadable stream spec in Redis")
                    }
                }
            }
            out.sort_by(|a, b| a.stm_id.cmp(&b.stm_id));
            Ok(out)
        })
    }

    fn orphans(&self) -> BoxFuture<'_, Result<Vec<String>, CoordError>> {
        Box::pin(async move {
            let mut con = self.con.clone();
            let mut ids: Vec<String> = self
                .scripts
                .orphans
                .key(self.keys.streams())
                .arg(self.keys.lease_prefix())
                .invoke_async(&mut con)
                .await
                .map_err(err)?;
            ids.sort();
            Ok(ids)
        })
    }

    fn acquire<'a>(
        &'a self,
        stm_id: &'a str,
        node: &'a str,
    ) -> BoxFuture<'a, Result<Option<Lease>, CoordError>> {
        Box::pin(async move {
            let mut con = self.con.clone();
            let epoch: i64 = self
                .scripts
                .acquire
                .key(self.keys.streams())
                .key(self.keys.lease(stm_id))
                .key(self.keys.epoch(stm_id))
                .arg(stm_id)
                .arg(node)
                .arg(ttl_ms(self.settings.lease_ttl))
                .invoke_async(&mut con)
                .await
                .map_err(err)?;
            Ok((epoch > 0).then(|| Lease {
                stm_id: stm_id.to_owned(),
                node: node.to_owned(),
                epoch: epoch as u64,
            }))
        })
    }

    fn renew<'a>(&'a self, leases: &'a [Lease]) -> BoxFuture<'a, Result<Vec<Lease>, CoordError>> {
        Box::pin(async move {
            let calls = leases.iter().map(|l| {
                let mut con = self.con.clone();
                async move {
                    let ok: i64 = self
                        .scripts
                        .renew
                        .key(self.keys.lease(&l.stm_id))
                        .arg(&l.node)
                        .arg(l.epoch)
                        .arg(ttl_ms(self.settings.lease_ttl))
                        .invoke_async(&mut con)
                        .await?;
                    Ok::<_, redis::RedisError>((l, ok == 1))
                }
            });
            let results = futures_util::future::join_all(calls).await;
            let mut lost = Vec::new();
            for r in results {
                let (lease, renewed) = r.map_err(err)?;
                if !renewed {
                    lost.push(lease.clone());
                }
            }
            Ok(lost)
        })
    }

    fn release<'a>(&'a self, lease: &'a Lease) -> BoxFuture<'a, Result<(), CoordError>> {
        Box::pin(async move {
            let mut con = self.con.clone();
            let _: i64 = self
                .scripts
                .release
                .key(self.keys.lease(&lease.stm_id))
                .key(self.keys.events())
                .arg(&lease.node)
                .arg(lease.epoch)
                .arg(&lease.stm_id)
                .invoke_async(&mut con)
                .await
                .map_err(err)?;
            Ok(())
        })
    }

    fn owner<'a>(&'a self, stm_id: &'a str) -> BoxFuture<'a, Result<Option<Lease>, CoordError>> {
        Box::pin(async move {
            let mut con = self.con.clone();
            let (node, epoch): (Option<String>, Option<u64>) = redis::cmd("HMGET")
                .arg(self.keys.lease(stm_id))
                .arg("node")
                .arg("epoch")
                .query_async(&mut con)
                .await
                .map_err(err)?;
            Ok(node.zip(epoch).map(|(node, epoch)| Lease {
                stm_id: stm_id.to_owned(),
                node,
                epoch,
            }))
        })
    }

    fn hand_over<'a>(
        &'a self,
        lease: &'a Lease,
        policy: &'a HandoverPolicy,
    ) -> BoxFuture<'a, Result<Option<Duration>, CoordError>> {
        Box::pin(async move {
            let mut con = self.con.clone();
            let ms: i64 = self
                .scripts
                .hand_over
                .key(self.keys.lease(&lease.stm_id))
                .key(self.keys.cooldowns())
                .key(self.keys.events())
                .arg(&lease.node)
                .arg(lease.epoch)
                .arg(&lease.stm_id)
                .arg(ttl_ms(policy.cooldown))
                .arg(ttl_ms(policy.cooldown_max))
                .invoke_async(&mut con)
                .await
                .map_err(err)?;
            Ok((ms >= 0).then(|| Duration::from_millis(ms as u64)))
        })
    }

    fn cooling(&self) -> BoxFuture<'_, Result<Cooling, CoordError>> {
        Box::pin(async move {
            let mut con = self.con.clone();
            let flat: Vec<String> = self
                .scripts
                .cooling
                .key(self.keys.cooldowns())
                .invoke_async(&mut con)
                .await
                .map_err(err)?;
            let mut out = Cooling::new();
            for pair in flat.chunks_exact(2) {
                out.entry(pair[0].clone())
                    .or_default()
                    .insert(pair[1].clone());
            }
            Ok(out)
        })
    }

    fn heartbeat<'a>(&'a self, node: &'a NodeInfo) -> BoxFuture<'a, Result<(), CoordError>> {
        Box::pin(async move {
            let json = serde_json::to_string(node).map_err(|e| CoordError(e.to_string()))?;
            let mut con = self.con.clone();
            redis::pipe()
                .atomic()
                .sadd(self.keys.nodes(), &node.node)
                .ignore()
                .pset_ex(
                    self.keys.node(&node.node),
                    json,
                    ttl_ms(self.settings.node_ttl),
                )
                .ignore()
                .query_async::<()>(&mut con)
                .await
                .map_err(err)
        })
    }

    fn leave<'a>(&'a self, node: &'a str) -> BoxFuture<'a, Result<(), CoordError>> {
        Box::pin(async move {
            let mut con = self.con.clone();
            redis::pipe()
                .atomic()
                .srem(self.keys.nodes(), node)
                .ignore()
                .del(self.keys.node(node))
                .ignore()
                .query_async::<()>(&mut con)
                .await
                .map_err(err)
        })
    }

    fn nodes(&self) -> BoxFuture<'_, Result<Vec<NodeInfo>, CoordError>> {
        Box::pin(async move {
            let mut con = self.con.clone();
            let ids: Vec<String> = con.smembers(self.keys.nodes()).await.map_err(err)?;
            let mut out = Vec::new();
            for id in ids {
                let json: Option<String> = con.get(self.keys.node(&id)).await.map_err(err)?;
                match json.and_then(|j| serde_json::from_str::<NodeInfo>(&j).ok()) {
                    Some(info) => out.push(info),
                    // Its heartbeat expired: the node is gone.
                    None => {
                        let _: i64 = con.srem(self.keys.nodes(), &id).await.map_err(err)?;
                    }
                }
            }
            out.sort_by(|a, b| a.node.cmp(&b.node));
            Ok(out)
        })
    }

    fn watch(&self, notify: Arc<Notify>) {
        tokio::spawn(watch_events(
            self.client.clone(),
            self.keys.events(),
            self.settings.timeout,
            notify,
        ));
    }
}
