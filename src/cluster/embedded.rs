//! EmbeddedCoordinator: the single-node [`Coordinator`], in memory.
//!
//! Same rules as the cluster — specs keyed by `stmId`, leases with a TTL and an epoch that
//! grows on every acquisition ([`LeaseTable`]), node heartbeats that expire — so a node
//! behaves the same alone as in a cluster; only the state lives in this process.

use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::coordinator::{BoxFuture, CoordError, Coordinator, NodeInfo, Put};
use super::handover::{CooldownBook, Cooling, HandoverPolicy};
use super::lease::{Lease, LeaseTable};
use crate::api::spec::StreamRequest;

/// Lease lifetime (SPEC §6 default); owners renew every second.
pub const LEASE_TTL: Duration = Duration::from_secs(3);

/// A node that has not sent a heartbeat for this long is not listed.
const NODE_TTL: Duration = LEASE_TTL;

struct State {
    specs: BTreeMap<String, StreamRequest>,
    cooldowns: CooldownBook,
    leases: LeaseTable,
    nodes: BTreeMap<String, (NodeInfo, Instant)>,
}

pub struct EmbeddedCoordinator {
    state: Mutex<State>,
    lease_ttl: Duration,
}

impl Default for EmbeddedCoordinator {
    fn default() -> Self {
        Self::new(LEASE_TTL)
    }
}

impl EmbeddedCoordinator {
    pub fn new(lease_ttl: Duration) -> Self {
        Self {
            state: Mutex::new(State {
                specs: BTreeMap::new(),
                cooldowns: CooldownBook::default(),
                leases: LeaseTable::new(lease_ttl),
                nodes: BTreeMap::new(),
            }),
            lease_ttl,
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Every critical section below is a few map operations that cannot leave the state
        // half-changed, so a poisoned lock still holds consistent data.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn ready<'a, T: Send + 'a>(value: T) -> BoxFuture<'a, T> {
    Box::pin(std::future::ready(value))
}

impl Coordinator for EmbeddedCoordinator {
    fn lease_ttl(&self) -> Duration {
        self.lease_ttl
    }

    fn is_shared(&self) -> bool {
        false
    }

    fn put_stream<'a>(
        &'a self,
        request: &'a StreamRequest,
        replace: bool,
    ) -> BoxFuture<'a, Result<Put, CoordError>> {
        let mut s = self.lock();
        let put = match s.specs.get(&request.stm_id) {
            Some(_) if !replace => Put::Exists,
            Some(stored) if stored == request => Put::Unchanged,
            Some(_) => Put::Replaced,
            None => Put::Created,
        };
        if matches!(put, Put::Created | Put::Replaced) {
            s.specs.insert(request.stm_id.clone(), request.clone());
        }
        ready(Ok(put))
    }

    fn remove_stream<'a>(&'a self, stm_id: &'a str) -> BoxFuture<'a, Result<bool, CoordError>> {
        let mut s = self.lock();
        let existed = s.specs.remove(stm_id).is_some();
        s.leases.forget(stm_id);
        s.cooldowns.forget(stm_id);
        ready(Ok(existed))
    }

    fn streams(&self) -> BoxFuture<'_, Result<Vec<StreamRequest>, CoordError>> {
        ready(Ok(self.lock().specs.values().cloned().collect()))
    }

    fn acquire<'a>(
        &'a self,
        stm_id: &'a str,
        node: &'a str,
    ) -> BoxFuture<'a, Result<Option<Lease>, CoordError>> {
        let mut s = self.lock();
        let lease = if s.specs.contains_key(stm_id) {
            s.leases.acquire(stm_id, node, Instant::now())
        } else {
            None
        };
        ready(Ok(lease))
    }

    fn renew<'a>(&'a self, leases: &'a [Lease]) -> BoxFuture<'a, Result<Vec<Lease>, CoordError>> {
        let mut s = self.lock();
        let now = Instant::now();
        let lost = leases
            .iter()
            .filter(|l| !s.leases.renew(l, now))
            .cloned()
            .collect();
        ready(Ok(lost))
    }

    fn release<'a>(&'a self, lease: &'a Lease) -> BoxFuture<'a, Result<(), CoordError>> {
        self.lock().leases.release(lease);
        ready(Ok(()))
    }

    fn orphans(&self) -> BoxFuture<'_, Result<Vec<String>, CoordError>> {
        let s = self.lock();
        let now = Instant::now();
        let ids = s
            .specs
            .keys()
            .filter(|id| s.leases.holder(id, now).is_none())
            .cloned()
            .collect();
        ready(Ok(ids))
    }

    fn owner<'a>(&'a self, stm_id: &'a str) -> BoxFuture<'a, Result<Option<Lease>, CoordError>> {
        ready(Ok(self.lock().leases.holder(stm_id, Instant::now())))
    }

    fn hand_over<'a>(
        &'a self,
        lease: &'a Lease,
        policy: &'a HandoverPolicy,
    ) -> BoxFuture<'a, Result<Option<Duration>, CoordError>> {
        let mut s = self.lock();
        if !s.leases.release(lease) {
            return ready(Ok(None));
        }
        let cooldown = s
            .cooldowns
            .record(&lease.stm_id, &lease.node, Instant::now(), policy);
        ready(Ok(Some(cooldown)))
    }

    fn cooling(&self) -> BoxFuture<'_, Result<Cooling, CoordError>> {
        ready(Ok(self.lock().cooldowns.cooling(Instant::now())))
    }

    fn heartbeat<'a>(&'a self, node: &'a NodeInfo) -> BoxFuture<'a, Result<(), CoordError>> {
        self.lock()
            .nodes
            .insert(node.node.clone(), (node.clone(), Instant::now()));
        ready(Ok(()))
    }

    fn leave<'a>(&'a self, node: &'a str) -> BoxFuture<'a, Result<(), CoordError>> {
        self.lock().nodes.remove(node);
        ready(Ok(()))
    }

    fn nodes(&self) -> BoxFuture<'_, Result<Vec<NodeInfo>, CoordError>> {
        let now = Instant::now();
        let nodes = self
            .lock()
            .nodes
            .values()
            .filter(|(_, seen)| now.duration_since(*seen) < NODE_TTL)
            .map(|(n, _)| n.clone())
            .collect();
        ready(Ok(nodes))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(id: &str) -> StreamRequest {
        serde_json::from_value(serde_json::json!({
            "stmId": id,
            "whepUrl": "http://127.0.0.1:1985/rtc/v1/whep/?app=live&stream=a",
        }))
        .expect("request")
    }

    fn block<T>(f: BoxFuture<'_, T>) -> T {
        futures_util::FutureExt::now_or_never(f).expect("embedded futures are ready")
    }

    #[test]
    fn specs_create_replace_and_remove() {
        let c = EmbeddedCoordinator::default();
        let r = request("s1");
        assert_eq!(block(c.put_stream(&r, false)).ok(), Some(Put::Created));
        assert_eq!(block(c.put_stream(&r, false)).ok(), Some(Put::Exists));
        let mut changed = r.clone();
        changed.whep_url = "http://127.0.0.1:1985/other".into();
        assert_eq!(
            block(c.put_stream(&changed, true)).ok(),
            Some(Put::Replaced)
        );
        let all = block(c.streams()).expect("streams");
        assert_eq!(all, vec![changed]);
        assert_eq!(block(c.remove_stream("s1")).ok(), Some(true));
        assert_eq!(block(c.remove_stream("s1")).ok(), Some(false));
        assert!(block(c.streams()).expect("streams").is_empty());
    }

    #[test]
    fn leases_exist_only_for_stored_streams_and_fence_other_nodes() {
        let c = EmbeddedCoordinator::default();
        assert_eq!(
            block(c.acquire("s1", "a")).ok(),
            Some(None),
            "no spec, no lease"
        );
        block(c.put_stream(&request("s1"), false)).expect("put");
        let lease = block(c.acquire("s1", "a")).expect("ok").expect("granted");
        assert_eq!(lease.epoch, 1);
        assert_eq!(block(c.acquire("s1", "b")).ok(), Some(None));
        assert!(block(c.renew(std::slice::from_ref(&lease)))
            .expect("renew")
            .is_empty());
        block(c.release(&lease)).expect("release");
        let lost = block(c.renew(std::slice::from_ref(&lease))).expect("renew");
        assert_eq!(lost, vec![lease]);
        let b = block(c.acquire("s1", "b")).expect("ok").expect("granted");
        assert_eq!(b.epoch, 2);
        // Deleting the stream drops its lease.
        block(c.remove_stream("s1")).expect("remove");
        assert_eq!(
            block(c.renew(std::slice::from_ref(&b))).expect("renew"),
            vec![b]
        );
    }

    #[test]
    fn nodes_are_listed_while_they_send_heartbeats() {
        let c = EmbeddedCoordinator::default();
        let info = NodeInfo {
            node: "a".into(),
            address: "127.0.0.1:8080".into(),
            streams: 2,
            arbiter_loads: vec![1, 1],
            stream_states: BTreeMap::new(),
        };
        block(c.heartbeat(&info)).expect("heartbeat");
        assert_eq!(block(c.nodes()).expect("nodes"), vec![info]);
    }
}
