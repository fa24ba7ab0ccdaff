//! `wsMode: shared`: the node's consumer connections, one per distinct URL + headers, shared
//! by the streams that name them; the last stream out retires its link.

use std::collections::BTreeSet;

use actix::prelude::*;

use super::StreamRegistry;
use crate::output::link::{LinkConfig, Retire, WsLinkActor};

/// A consumer connection shared by the streams that name the same URL and headers.
pub(super) struct SharedLink {
    pub(super) addr: Addr<WsLinkActor>,
    pub(super) streams: BTreeSet<String>,
}

impl StreamRegistry {
    /// The node's shared link for `cfg` (started on first use), and its key.
    pub(super) fn join_link(
        &mut self,
        cfg: LinkConfig,
        stm_id: &str,
    ) -> (String, Addr<WsLinkActor>) {
        let key = cfg.share_key();
        let link = self.links.entry(key.clone()).or_insert_with(|| {
            tracing::info!(url = %crate::output::link::redact(&cfg.url), "shared consumer link started");
            SharedLink {
                addr: WsLinkActor::shared(cfg).start(),
                streams: BTreeSet::new(),
            }
        });
        link.streams.insert(stm_id.to_owned());
        (key, link.addr.clone())
    }

    /// `stm_id` no longer sends on the link `key`; the last stream out retires it (it closes
    /// once the streams still draining on it have left).
    pub(super) fn leave_link(&mut self, key: Option<&str>, stm_id: &str) {
        let Some(key) = key else { return };
        let Some(link) = self.links.get_mut(key) else {
            return;
        };
        // A replaced stream's new run may have joined the same link under the same id.
        let still_used = self.streams.get(stm_id).and_then(|e| e.link_key.as_deref()) == Some(key);
        if !still_used {
            link.streams.remove(stm_id);
        }
        if link.streams.is_empty() {
            link.addr.do_send(Retire);
            self.links.remove(key);
        }
    }
}
