//! AckLedger: which client's chunks a consumer pong confirms, on one WebSocket connection.
//!
//! A connection can carry several streams (`wsMode: shared`). Each stream ("client") hands the
//! connection a batch of frames together with its own ack token (see
//! [`ReplayBuffer::ack_token`](super::replay::ReplayBuffer::ack_token)). The connection writes
//! the batch, then a ping carrying a connection-wide ping id. TCP keeps frames in order, so a
//! pong for ping `n` proves the consumer read every frame written before ping `n` — across all
//! clients. This ledger remembers, in write order, which (client, token) each ping closes,
//! and turns a pong back into per-client confirmations.
//!
//! Plain data, no I/O: the link actor owns one and clears it when a connection goes (the
//! clients rewind their own buffers then); ping ids keep growing across connections, so a
//! late pong can never confirm a batch of a newer connection.

use std::collections::VecDeque;

/// Identifies one client (stream) of a link.
pub type ClientId = u64;

#[derive(Debug, Default)]
pub struct AckLedger {
    /// The next ping id to hand out (ids only grow on a connection).
    next_ping: u64,
    /// (ping id, client, token), ping ids ascending.
    pending: VecDeque<(u64, ClientId, u64)>,
}

impl AckLedger {
    pub fn new() -> Self {
        Self::default()
    }

    /// A batch of `client` was written, ending at `token`: returns the id of the ping to write
    /// right after it.
    pub fn record(&mut self, client: ClientId, token: u64) -> u64 {
        let ping = self.next_ping();
        self.pending.push_back((ping, client, token));
        ping
    }

    /// A ping id for a keepalive ping (confirms whatever was written before it).
    pub fn next_ping(&mut self) -> u64 {
        let id = self.next_ping;
        self.next_ping += 1;
        id
    }

    /// The consumer answered ping `ping`: every batch recorded at or before it is confirmed.
    /// Returns, per client, the highest token confirmed (in order of first appearance). A pong
    /// for an id never handed out confirms nothing.
    pub fn on_pong(&mut self, ping: u64) -> Vec<(ClientId, u64)> {
        let mut out: Vec<(ClientId, u64)> = Vec::new();
        if ping >= self.next_ping {
            return out;
        }
        while let Some(&(id, client, token)) = self.pending.front() {
            if id > ping {
                break;
            }
            self.pending.pop_front();
            match out.iter_mut().find(|(c, _)| *c == client) {
                Some(entry) => entry.1 = entry.1.max(token),
                None => out.push((client, token)),
            }
        }
        out
    }

    /// Forgets what a client still had in flight (it left the link).
    pub fn forget(&mut self, client: ClientId) {
        self.pending.retain(|&(_, c, _)| c != client);
    }

    /// The connection is gone: nothing pending can be confirmed any more.
    pub fn clear(&mut self) {
        self.pending.clear();
    }

    /// Batches written but not yet confirmed.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    /// Whether `client` has a batch waiting for a pong.
    pub fn has_pending(&self, client: ClientId) -> bool {
        self.pending.iter().any(|&(_, c, _)| c == client)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pong_confirms_every_batch_before_its_ping_per_client() {
        let mut l = AckLedger::new();
        let p0 = l.record(1, 10);
        let p1 = l.record(2, 5);
        let p2 = l.record(1, 12);
        let p3 = l.record(2, 7);
        assert_eq!((p0, p1, p2, p3), (0, 1, 2, 3));
        // The pong for ping 2 covers batches 0..=2: client 1 up to 12, client 2 up to 5.
        assert_eq!(l.on_pong(p2), vec![(1, 12), (2, 5)]);
        assert_eq!(l.pending(), 1);
        assert_eq!(l.on_pong(p3), vec![(2, 7)]);
        assert_eq!(l.pending(), 0);
    }

    #[test]
    fn keepalive_pings_confirm_what_came_before_them() {
        let mut l = AckLedger::new();
        l.record(1, 3);
        let keep = l.next_ping();
        l.record(1, 4);
        assert_eq!(l.on_pong(keep), vec![(1, 3)]);
        assert!(l.has_pending(1));
    }

    #[test]
    fn late_duplicate_and_unknown_pongs_confirm_nothing_new() {
        let mut l = AckLedger::new();
        let p = l.record(1, 3);
        assert_eq!(l.on_pong(p), vec![(1, 3)]);
        assert_eq!(l.on_pong(p), vec![]);
        // Never handed out (e.g. an echo from an older connection's ledger).
        assert_eq!(l.on_pong(99), vec![]);
        let q = l.record(1, 4);
        assert_eq!(l.on_pong(99), vec![]);
        assert_eq!(l.on_pong(q), vec![(1, 4)]);
        // A new connection: old ids stay spent.
        let r = l.record(1, 5);
        l.clear();
        assert_eq!(l.on_pong(r), vec![]);
        assert!(l.record(1, 6) > r);
    }

    #[test]
    fn a_client_that_leaves_is_forgotten() {
        let mut l = AckLedger::new();
        l.record(1, 3);
        let p = l.record(2, 8);
        l.forget(1);
        assert!(!l.has_pending(1));
        assert_eq!(l.on_pong(p), vec![(2, 8)]);
    }
}
