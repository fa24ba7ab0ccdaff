//! Jitter/reorder buffer for RTP packets (SPEC §2, DecoderActor).
//!
//! The buffer turns the arrival order of RTP packets into sequence order with as little added
//! delay as possible:
//! - a packet that is exactly the next expected one is emitted at once (no added latency on a
//!   clean network, which is the common case on loopback and in a data centre);
//! - after a gap, later packets are held until the gap fills or the held span (by RTP
//!   timestamp, 48 kHz clock) exceeds the window; then the missing packets are declared lost;
//! - packets behind the emitted point are dropped (late, or duplicates when we know we already
//!   emitted that number);
//! - a big sequence jump in either direction (SRS continues the same SSRC with a jump when the
//!   publisher comes back) resynchronises to the new numbering instead of waiting forever or
//!   reporting thousands of packets lost.
//!
//! There are no timers: the owner calls [`ReorderBuffer::flush`] when media stalls, so the
//! held packets are never stuck behind a gap that will not fill.

use std::collections::VecDeque;

use super::packet::RtpPacket;

/// RTP clock of Opus (RFC 7587: always 48 kHz, whatever the coded bandwidth).
const RTP_CLOCK_HZ: u32 = 48_000;

/// A sequence distance larger than this (either direction) is a renumbering, not loss or
/// reordering: 1000 packets is 20 s of 20 ms Opus, far beyond any jitter window.
const MAX_SEQ_DISTANCE: i64 = 1_000;

/// This many packets in a row behind the emitted point means the sender restarted its
/// numbering lower (a small backwards jump), so we resync to it.
const MAX_CONSECUTIVE_BEHIND: u32 = 8;

/// How many already-emitted sequence numbers are remembered to tell duplicates from late
/// packets (a bit per number, below `next`).
const HISTORY_BITS: i64 = 64;

/// Settings of the reorder buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReorderConfig {
    /// How much media (ms of RTP timestamp span) may be held waiting for a missing packet.
    /// Default 60 ms; 0 disables reordering (a gap is declared lost as soon as it is seen).
    pub window_ms: u32,
}

impl Default for ReorderConfig {
    fn default() -> Self {
        Self { window_ms: 60 }
    }
}

/// What the buffer emits, in sequence order.
#[derive(Debug, Clone)]
pub enum Reordered {
    /// The next packet of the stream.
    Packet(RtpPacket),
    /// `count` packets are missing right before the next emitted [`Reordered::Packet`].
    /// The decoder conceals by RTP timestamp, so this is informational (stats) only.
    Lost { count: u16 },
}

/// Counters of the reorder buffer (cumulative since creation).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReorderStats {
    /// Packets pushed.
    pub received: u64,
    /// Packets emitted.
    pub emitted: u64,
    /// Packets that arrived out of order but in time to be put back in place.
    pub reordered: u64,
    /// Packets dropped because they arrived behind the emitted point (already declared lost).
    pub late: u64,
    /// Packets dropped because the same sequence number was already emitted or held.
    pub duplicates: u64,
    /// Packets declared lost.
    pub lost: u64,
    /// Times the buffer adopted a new sequence numbering (big jump or run of late packets).
    pub resyncs: u64,
}

/// Reorders RTP packets by extended sequence number. See the module docs.
#[derive(Debug)]
pub struct ReorderBuffer {
    /// Held span beyond which the gap is given up, in RTP timestamp units.
    window_ts: u32,
    /// Extended sequence number of the next packet to emit; `None` before the first packet.
    next: Option<i64>,
    /// RTP timestamp of the last emitted packet (reference for the held span).
    last_ts: u32,
    /// Slot `i` holds the packet with extended sequence `next + i`; slot 0 is always empty
    /// (otherwise it would have been emitted).
    held: VecDeque<Option<RtpPacket>>,
    /// Bit `k` set = sequence `next - 1 - k` was emitted (duplicate detection).
    history: u64,
    /// Packets in a row that were behind the emitted point.
    behind_run: u32,
    stats: ReorderStats,
}

impl ReorderBuffer {
    pub fn new(cfg: ReorderConfig) -> Self {
        Self {
            window_ts: cfg.window_ms.saturating_mul(RTP_CLOCK_HZ / 1000),
            next: None,
            last_ts: 0,
            held: VecDeque::with_capacity(16),
            history: 0,
            behind_run: 0,
            stats: ReorderStats::default(),
        }
    }

    pub fn stats(&self) -> ReorderStats {
        self.stats
    }

    /// Number of packets currently held behind a gap.
    pub fn held_packets(&self) -> usize {
        self.held.iter().filter(|slot| slot.is_some()).count()
    }

    /// Accepts one packet and appends whatever became ready to `out`, in order.
    pub fn push(&mut self, pkt: RtpPacket, out: &mut Vec<Reordered>) {
        self.stats.received += 1;
        let Some(next) = self.next else {
            self.start_at(i64::from(pkt.seq), pkt, out);
            return;
        };
        // Unwrap the 16-bit number to the extended sequence closest to the expected one.
        let distance = i64::from(pkt.seq.wrapping_sub(next as u16) as i16);
        let ext = next + distance;

        if distance.abs() > MAX_SEQ_DISTANCE {
            self.resync(ext, pkt, out);
            return;
        }
        if distance < 0 {
            self.behind(distance, ext, pkt, out);
            return;
        }
        self.behind_run = 0;
        if distance == 0 {
            if !self.held.is_empty() {
                // It filled a gap: a later packet overtook it.
                self.stats.reordered += 1;
            }
            self.emit(pkt, out);
            self.release_ready(out);
            return;
        }
        // A gap before this packet: hold it.
        let slot = distance as usize;
        if self.held.len() <= slot {
            self.held.resize(slot + 1, None);
        }
        if self.held[slot].is_some() {
            self.stats.duplicates += 1;
            return;
        }
        if slot + 1 < self.held.len() {
            // A later packet is already held: this one was overtaken.
            self.stats.reordered += 1;
        }
        self.held[slot] = Some(pkt);
        self.release_expired(out);
    }

    /// Emits every held packet in order (declaring the gaps lost), e.g. when media stalls.
    pub fn flush(&mut self, out: &mut Vec<Reordered>) {
        while !self.held.is_empty() {
            self.release_one_gap(out);
        }
    }

    /// Adopts `ext` as the numbering of the first packet and emits it.
    fn start_at(&mut self, ext: i64, pkt: RtpPacket, out: &mut Vec<Reordered>) {
        self.next = Some(ext);
        self.history = 0;
        self.behind_run = 0;
        self.emit(pkt, out);
    }

    /// A renumbering: what is held is still real audio, so emit it first, then restart.
    fn resync(&mut self, ext: i64, pkt: RtpPacket, out: &mut Vec<Reordered>) {
        self.flush(out);
        self.stats.resyncs += 1;
        self.start_at(ext, pkt, out);
    }

    /// A packet behind the emitted point: a duplicate, a late packet, or (after a run of
    /// them) the sign of a sender that restarted its numbering lower.
    fn behind(&mut self, distance: i64, ext: i64, pkt: RtpPacket, out: &mut Vec<Reordered>) {
        self.behind_run += 1;
        if self.behind_run >= MAX_CONSECUTIVE_BEHIND {
            self.resync(ext, pkt, out);
            return;
        }
        let back = -distance - 1; // 0 = the last emitted number
        if back < HISTORY_BITS && self.history & (1u64 << back) != 0 {
            self.stats.duplicates += 1;
        } else {
            self.stats.late += 1;
        }
    }

    /// Emits `pkt` as the packet with sequence `next` and advances.
    fn emit(&mut self, pkt: RtpPacket, out: &mut Vec<Reordered>) {
        if let Some(next) = self.next.as_mut() {
            *next += 1;
        }
        self.history = (self.history << 1) | 1;
        self.last_ts = pkt.timestamp;
        self.stats.emitted += 1;
        out.push(Reordered::Packet(pkt));
        // Slot 0 was the one just emitted (or empty when emitted directly).
        self.held.pop_front();
    }

    /// Emits the contiguous run of held packets starting at `next`.
    fn release_ready(&mut self, out: &mut Vec<Reordered>) {
        while let Some(Some(_)) = self.held.front() {
            if let Some(Some(pkt)) = self.held.front_mut().map(Option::take) {
                self.emit(pkt, out);
            }
        }
        if self.held.iter().all(Option::is_none) {
            self.held.clear();
        }
    }

    /// Gives up gaps while the held span exceeds the window.
    fn release_expired(&mut self, out: &mut Vec<Reordered>) {
        while let Some(newest_ts) = self.newest_held_ts() {
            let span = newest_ts.wrapping_sub(self.last_ts) as i32;
            // A timestamp going backwards while the sequence goes forward is nonsense; do not
            // hold on to it (abs makes it "exceeded").
            if span.unsigned_abs() <= self.window_ts && self.window_ts > 0 {
                break;
            }
            self.release_one_gap(out);
        }
    }

    /// Declares the missing packets before the first held one lost and emits the run that
    /// follows. With nothing held it only clears the slots.
    fn release_one_gap(&mut self, out: &mut Vec<Reordered>) {
        let missing = self.held.iter().take_while(|slot| slot.is_none()).count();
        if missing == self.held.len() {
            self.held.clear();
            return;
        }
        if missing > 0 {
            self.held.drain(..missing);
            if let Some(next) = self.next.as_mut() {
                *next += missing as i64;
            }
            self.history = self.history.checked_shl(missing as u32).unwrap_or(0);
            self.stats.lost += missing as u64;
            // MAX_SEQ_DISTANCE keeps `missing` far below u16::MAX.
            out.push(Reordered::Lost {
                count: missing.min(usize::from(u16::MAX)) as u16,
            });
        }
        self.release_ready(out);
    }

    fn newest_held_ts(&self) -> Option<u32> {
        self.held
            .iter()
            .rev()
            .find_map(|slot| slot.as_ref().map(|p| p.timestamp))
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use bytes::Bytes;

    use super::*;

    fn pkt(seq: u16, ts: u32) -> RtpPacket {
        RtpPacket {
            seq,
            timestamp: ts,
            payload: Bytes::from_static(&[1, 2, 3]),
            arrival: Instant::now(),
        }
    }

    /// Packet `seq` of a 20 ms stream whose timestamps follow the sequence.
    fn p20(seq: u16) -> RtpPacket {
        pkt(seq, u32::from(seq).wrapping_mul(960))
    }

    /// Renders the output as seq numbers, with lost runs as `-count`.
    fn render(out: &[Reordered]) -> Vec<i32> {
        out.iter()
            .map(|r| match r {
                Reordered::Packet(p) => i32::from(p.seq),
                Reordered::Lost { count } => -i32::from(*count),
            })
            .collect()
    }

    fn run(cfg: ReorderConfig, seqs: &[u16]) -> (Vec<i32>, ReorderStats) {
        let mut rb = ReorderBuffer::new(cfg);
        let mut out = Vec::new();
        for &s in seqs {
            rb.push(p20(s), &mut out);
        }
        (render(&out), rb.stats())
    }

    #[test]
    fn in_order_packets_pass_at_once() {
        let mut rb = ReorderBuffer::new(ReorderConfig::default());
        let mut out = Vec::new();
        for s in 0..5 {
            rb.push(p20(s), &mut out);
            assert_eq!(out.len(), usize::from(s) + 1, "packet {s} was delayed");
        }
        assert_eq!(render(&out), vec![0, 1, 2, 3, 4]);
        assert_eq!(rb.stats().lost, 0);
    }

    #[test]
    fn srs_first_packet_seq0_ts0() {
        let mut rb = ReorderBuffer::new(ReorderConfig::default());
        let mut out = Vec::new();
        rb.push(pkt(0, 0), &mut out);
        rb.push(pkt(1, 960), &mut out);
        assert_eq!(render(&out), vec![0, 1]);
    }

    #[test]
    fn swapped_packets_are_put_back_in_order() {
        let (out, st) = run(ReorderConfig::default(), &[0, 1, 3, 2, 4]);
        assert_eq!(out, vec![0, 1, 2, 3, 4]);
        assert_eq!((st.lost, st.late, st.reordered), (0, 0, 1));
        let (out, st) = run(ReorderConfig::default(), &[0, 3, 2, 1, 4]);
        assert_eq!(out, vec![0, 1, 2, 3, 4]);
        assert_eq!((st.lost, st.reordered), (0, 2));
    }

    #[test]
    fn gap_is_declared_lost_when_window_exceeded() {
        let mut rb = ReorderBuffer::new(ReorderConfig { window_ms: 60 });
        let mut out = Vec::new();
        for s in [0, 1, 3, 4] {
            rb.push(p20(s), &mut out);
        }
        // 3 and 4 held: span from 1 to 4 is 60 ms, not beyond the window yet.
        assert_eq!(render(&out), vec![0, 1]);
        assert_eq!(rb.held_packets(), 2);
        rb.push(p20(5), &mut out); // span 80 ms > 60 ms
        assert_eq!(render(&out), vec![0, 1, -1, 3, 4, 5]);
        // The lost one arriving now is late.
        rb.push(p20(2), &mut out);
        let st = rb.stats();
        assert_eq!((st.lost, st.late, st.duplicates), (1, 1, 0));
    }

    #[test]
    fn zero_window_disables_reordering() {
        let (out, st) = run(ReorderConfig { window_ms: 0 }, &[0, 2, 1, 3]);
        assert_eq!(out, vec![0, -1, 2, 3]);
        assert_eq!((st.lost, st.late), (1, 1));
    }

    #[test]
    fn duplicates_are_dropped_and_counted() {
        let (out, st) = run(ReorderConfig::default(), &[0, 1, 1, 3, 3, 2, 0]);
        assert_eq!(out, vec![0, 1, 2, 3]);
        assert_eq!(st.duplicates, 3);
        assert_eq!(st.late, 0);
    }

    #[test]
    fn seq_wraparound_is_continuous() {
        // Timestamps follow the extended sequence (65533 is index 0).
        let mut rb = ReorderBuffer::new(ReorderConfig::default());
        let mut out = Vec::new();
        for s in [65533u16, 65534, 0, 65535, 1, 2] {
            let index = u32::from(s.wrapping_sub(65533));
            rb.push(pkt(s, index * 960), &mut out);
        }
        assert_eq!(render(&out), vec![65533, 65534, 65535, 0, 1, 2]);
        let st = rb.stats();
        assert_eq!((st.lost, st.late, st.resyncs, st.reordered), (0, 0, 0, 1));
    }

    #[test]
    fn flush_releases_held_packets_with_loss() {
        let mut rb = ReorderBuffer::new(ReorderConfig { window_ms: 1000 });
        let mut out = Vec::new();
        for s in [10, 12, 15] {
            rb.push(p20(s), &mut out);
        }
        assert_eq!(render(&out), vec![10]);
        rb.flush(&mut out);
        assert_eq!(render(&out), vec![10, -1, 12, -2, 15]);
        assert_eq!(rb.stats().lost, 3);
        // After the flush, the stream continues normally.
        rb.push(p20(16), &mut out);
        assert_eq!(render(&out).last(), Some(&16));
    }

    #[test]
    fn big_forward_jump_resyncs_without_mass_loss() {
        // SRS republish: same SSRC, the numbering jumps.
        let (out, st) = run(ReorderConfig::default(), &[100, 101, 30_000, 30_001]);
        assert_eq!(out, vec![100, 101, 30_000, 30_001]);
        assert_eq!((st.lost, st.resyncs), (0, 1));
    }

    #[test]
    fn big_backward_jump_resyncs() {
        let (out, st) = run(ReorderConfig::default(), &[5000, 5001, 0, 1, 2]);
        assert_eq!(out, vec![5000, 5001, 0, 1, 2]);
        assert_eq!((st.lost, st.late, st.resyncs), (0, 0, 1));
    }

    #[test]
    fn small_backward_restart_resyncs_after_a_run_of_late_packets() {
        let mut seqs: Vec<u16> = (500..520).collect();
        seqs.extend(300..320);
        let (out, st) = run(ReorderConfig::default(), &seqs);
        let late = MAX_CONSECUTIVE_BEHIND as usize - 1;
        let mut expected: Vec<i32> = (500..520).collect();
        expected.extend(300 + late as i32..320);
        assert_eq!(out, expected);
        assert_eq!(st.resyncs, 1);
        assert_eq!(st.late + st.duplicates, late as u64);
    }

    #[test]
    fn held_packets_survive_a_resync() {
        let mut rb = ReorderBuffer::new(ReorderConfig::default());
        let mut out = Vec::new();
        for s in [1, 3, 20_000] {
            rb.push(p20(s), &mut out);
        }
        assert_eq!(render(&out), vec![1, -1, 3, 20_000]);
    }

    #[test]
    fn backwards_timestamp_is_not_held() {
        let mut rb = ReorderBuffer::new(ReorderConfig::default());
        let mut out = Vec::new();
        rb.push(pkt(1, 96_000), &mut out);
        rb.push(pkt(3, 0), &mut out);
        assert_eq!(render(&out), vec![1, -1, 3]);
    }
}
