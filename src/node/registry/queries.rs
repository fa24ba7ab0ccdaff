//! The registry's read-only messages: this node's streams and figures, the cluster-wide
//! view, where a stream another node runs is, and live listeners of a stream's audio.

use std::collections::BTreeMap;

use actix::prelude::*;

use super::status::{Elsewhere, StreamStatus};
use super::{unavailable, StreamRegistry};
use crate::api::problem::Problem;
use crate::api::spec::StreamRequest;
use crate::cluster::NodeInfo;

#[derive(Message)]
#[rtype(result = "Vec<StreamStatus>")]
pub struct ListStreams;

impl Handler<ListStreams> for StreamRegistry {
    type Result = MessageResult<ListStreams>;

    fn handle(&mut self, _: ListStreams, _: &mut Self::Context) -> Self::Result {
        MessageResult(self.streams.values().map(|e| self.status(e)).collect())
    }
}

/// Every stream of the cluster (`GET /v1/streams`): this node's with their live figures,
/// the others as the coordinator sees them.
#[derive(Message)]
#[rtype(result = "Result<Vec<StreamStatus>, Problem>")]
pub struct ListCluster;

impl Handler<ListCluster> for StreamRegistry {
    type Result = ResponseFuture<Result<Vec<StreamStatus>, Problem>>;

    fn handle(&mut self, _: ListCluster, _: &mut Self::Context) -> Self::Result {
        let mut local: BTreeMap<String, StreamStatus> = self
            .streams
            .iter()
            .map(|(id, e)| (id.clone(), self.status(e)))
            .collect();
        let coord = self.coord.clone();
        Box::pin(async move {
            let stored = coord.streams().await.map_err(unavailable)?;
            let nodes = coord.nodes().await.map_err(unavailable)?;
            let remote: Vec<&StreamRequest> = stored
                .iter()
                .filter(|r| !local.contains_key(&r.stm_id))
                .collect();
            let owners =
                futures_util::future::join_all(remote.iter().map(|r| coord.owner(&r.stm_id))).await;
            let mut all: Vec<StreamStatus> = Vec::with_capacity(stored.len());
            for (request, owner) in remote.into_iter().zip(owners) {
                let owner = owner.map_err(unavailable)?;
                all.push(StreamStatus::from_cluster(request, owner.as_ref(), &nodes));
            }
            // Local runs first in the id order the coordinator gives, then the rest.
            all.extend(std::mem::take(&mut local).into_values());
            all.sort_by(|a, b| a.spec.stm_id.cmp(&b.spec.stm_id));
            Ok(all)
        })
    }
}

/// Where a stream this node does not run is (`None`: no such stream).
#[derive(Message)]
#[rtype(result = "Result<Option<Elsewhere>, Problem>")]
pub struct Locate(pub String);

impl Handler<Locate> for StreamRegistry {
    type Result = ResponseFuture<Result<Option<Elsewhere>, Problem>>;

    fn handle(&mut self, Locate(id): Locate, _: &mut Self::Context) -> Self::Result {
        let coord = self.coord.clone();
        let me = self.node.clone();
        Box::pin(async move {
            let stored = coord.streams().await.map_err(unavailable)?;
            let Some(request) = stored.into_iter().find(|r| r.stm_id == id) else {
                return Ok(None);
            };
            let owner = coord.owner(&id).await.map_err(unavailable)?;
            let nodes = coord.nodes().await.map_err(unavailable)?;
            let address = owner
                .as_ref()
                .filter(|l| l.node != me)
                .and_then(|l| nodes.iter().find(|n| n.node == l.node))
                .map(|n| n.address.clone());
            Ok(Some(Elsewhere {
                status: StreamStatus::from_cluster(&request, owner.as_ref(), &nodes),
                address,
            }))
        })
    }
}

#[derive(Message)]
#[rtype(result = "Option<StreamStatus>")]
pub struct GetStream(pub String);

impl Handler<GetStream> for StreamRegistry {
    type Result = Option<StreamStatus>;

    fn handle(&mut self, GetStream(id): GetStream, _: &mut Self::Context) -> Self::Result {
        self.streams.get(&id).map(|e| self.status(e))
    }
}

/// This node's own figures.
#[derive(Message)]
#[rtype(result = "NodeInfo")]
pub struct GetNode;

impl Handler<GetNode> for StreamRegistry {
    type Result = MessageResult<GetNode>;

    fn handle(&mut self, _: GetNode, _: &mut Self::Context) -> Self::Result {
        MessageResult(self.node_info())
    }
}

/// The live nodes, as the coordinator knows them (`GET /v1/nodes`).
#[derive(Message)]
#[rtype(result = "Result<Vec<NodeInfo>, Problem>")]
pub struct ListNodes;

impl Handler<ListNodes> for StreamRegistry {
    type Result = ResponseFuture<Result<Vec<NodeInfo>, Problem>>;

    fn handle(&mut self, _: ListNodes, _: &mut Self::Context) -> Self::Result {
        let coord = self.coord.clone();
        let me = self.node_info();
        Box::pin(async move {
            let mut nodes = coord.nodes().await.map_err(unavailable)?;
            // Our own figures are fresher than our last heartbeat.
            match nodes.iter_mut().find(|n| n.node == me.node) {
                Some(n) => *n = me,
                None => nodes.push(me),
            }
            Ok(nodes)
        })
    }
}

/// One live listener of a stream's converted audio, for `GET /v1/streams/{stmId}/listen`:
/// the frames to come plus the format they are in (for the WAV header).
#[derive(Debug)]
pub struct ListenSource {
    pub listener: crate::output::listen::Listener,
    pub sample_rate: u32,
    pub channels: u16,
}

/// Subscribe to a stream's audio; `None` when this node runs no stream of that id.
#[derive(Message)]
#[rtype(result = "Option<ListenSource>")]
pub struct GetListen(pub String);

impl Handler<GetListen> for StreamRegistry {
    type Result = Option<ListenSource>;

    fn handle(&mut self, GetListen(id): GetListen, _: &mut Self::Context) -> Self::Result {
        let e = self.streams.get(&id)?;
        // A running stream's view is resolved (every output field set); applying it over the
        // node default only makes that total without an unwrap.
        let format = e
            .view
            .output
            .as_ref()
            .map_or(self.defaults.output, |o| o.apply(self.defaults.output));
        Some(ListenSource {
            listener: e.stats.listen.subscribe(),
            sample_rate: format.sample_rate,
            channels: format.channels,
        })
    }
}
