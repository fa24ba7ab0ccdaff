//! What the registry shows of a stream: [`StreamStatus`] (`GET /v1/streams/{stmId}`) for a
//! stream this node runs or one the cluster knows of, and [`Elsewhere`] for one another node
//! runs.

use serde::Serialize;

use crate::api::spec::{StreamRequest, StreamView};
use crate::cluster::{Lease, NodeInfo};
use crate::pipeline::messages::StreamState;
use crate::pipeline::stats::StatsSnapshot;

/// What `GET /v1/streams/{stmId}` shows.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StreamStatus {
    pub spec: StreamView,
    pub state: StreamState,
    pub owner: String,
    pub epoch: u64,
    pub stats: StatsSnapshot,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
}

impl StreamStatus {
    /// A stored stream that another node runs (its figures are on that node).
    pub(super) fn elsewhere(spec: StreamView) -> Self {
        Self {
            spec,
            state: StreamState::Starting,
            owner: String::new(),
            epoch: 0,
            stats: StatsSnapshot::default(),
            last_error: None,
        }
    }

    /// A stored stream as the coordinator sees it: its owner's lease and the state of that
    /// owner's last heartbeat (`starting` while nobody owns it).
    pub(super) fn from_cluster(
        request: &StreamRequest,
        owner: Option<&Lease>,
        nodes: &[NodeInfo],
    ) -> Self {
        let mut status = Self::elsewhere(StreamView::from_request(request));
        if let Some(lease) = owner {
            status.owner = lease.node.clone();
            status.epoch = lease.epoch;
            if let Some(state) = nodes
                .iter()
                .find(|n| n.node == lease.node)
                .and_then(|n| n.stream_states.get(&request.stm_id))
            {
                status.state = *state;
            }
        }
        status
    }
}

/// A stream this node does not run, as the cluster knows it.
#[derive(Debug, Clone)]
pub struct Elsewhere {
    pub status: StreamStatus,
    /// Its owner's API (`host:port`), when it has a live owner.
    pub address: Option<String>,
}
