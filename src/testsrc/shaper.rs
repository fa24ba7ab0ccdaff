//! Turns the shared stream of encoded frames into one session's RTP packets, applying that
//! session's misbehaviour (silence, drops, sequence jumps, loss, reordering).
//!
//! Pure and synchronous: time is counted in frames (20 ms each) since the session's first
//! frame, and randomness comes from an injected RNG, so every behaviour is unit-testable.
//! The encoder is paced by wall time, hence frame time equals wall time in the long run.

use std::time::Duration;

use bytes::Bytes;
use rand::Rng;

use super::behaviour::Behaviour;
use super::packetizer::Packetizer;

/// Duration of one Opus frame.
pub const FRAME: Duration = Duration::from_millis(20);

/// One RTP packet to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutPacket {
    pub seq: u16,
    pub timestamp: u32,
    pub payload: Bytes,
}

/// What the session does after a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Send whatever was queued and carry on.
    Continue,
    /// Close the peer connection now (`drop_after`).
    Drop,
}

/// Whether packets currently flow (reported in `/stats`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    Sending,
    Silent,
}

/// Per-session misbehaviour applied frame by frame.
pub struct Shaper<R> {
    packetizer: Packetizer,
    rng: R,
    /// Index of the next frame (frame 0 is the session's first).
    frame: u64,
    silence_start: Option<u64>,
    /// First frame after the silence; `None` = silent for good.
    silence_end: Option<u64>,
    silence_jump: u16,
    drop_at: Option<u64>,
    jump_every: Option<u64>,
    next_jump: u64,
    seq_jump: u16,
    loss: f64,
    reorder: f64,
    held: Option<OutPacket>,
    flow: Flow,
}

/// Frames in `d`, rounded to the nearest frame.
fn frames(d: Duration) -> u64 {
    ((d.as_secs_f64() / FRAME.as_secs_f64()).round()) as u64
}

impl<R: Rng> Shaper<R> {
    pub fn new(b: &Behaviour, rng: R) -> Self {
        let silence_start = b.silence_after.map(frames);
        let jump_every = b.seq_jump_every.map(frames).filter(|&n| n > 0);
        Self {
            packetizer: Packetizer::new(b.start_seq, b.start_ts),
            rng,
            frame: 0,
            silence_start,
            silence_end: silence_start.and_then(|s| b.silence_for.map(|f| s + frames(f))),
            silence_jump: b.silence_jump,
            drop_at: b.drop_after.map(frames),
            jump_every,
            next_jump: jump_every.unwrap_or(u64::MAX),
            seq_jump: b.seq_jump,
            loss: b.loss_pct / 100.0,
            reorder: b.reorder_pct / 100.0,
            held: None,
            flow: Flow::Sending,
        }
    }

    /// Whether the session is currently sending or silent.
    pub fn flow(&self) -> Flow {
        self.flow
    }

    /// Handles one encoded frame. `missed` frames before it never reached this session (a
    /// slow consumer of the shared stream); they count as lost packets.
    /// Packets to send are appended to `out` (0, 1 or 2 of them).
    pub fn on_frame(&mut self, missed: u32, payload: Bytes, out: &mut Vec<OutPacket>) -> Verdict {
        for _ in 0..missed {
            self.advance(None, out);
        }
        let verdict = self.advance(Some(payload), out);
        if verdict == Verdict::Drop {
            out.clear();
        }
        verdict
    }

    /// One frame of time. `payload` is `None` for a frame that was missed upstream.
    fn advance(&mut self, payload: Option<Bytes>, out: &mut Vec<OutPacket>) -> Verdict {
        let n = self.frame;
        self.frame += 1;
        if self.drop_at.is_some_and(|d| n >= d) {
            return Verdict::Drop;
        }
        if self.in_silence(n) {
            if self.flow == Flow::Sending {
                // The publisher vanished: what was in flight still arrives.
                if let Some(p) = self.held.take() {
                    out.push(p);
                }
                self.flow = Flow::Silent;
            }
            self.packetizer.idle(1);
            return Verdict::Continue;
        }
        if self.flow == Flow::Silent {
            // Republish: same SSRC, sequence numbers jump, the clock ran on.
            self.packetizer.jump_seq(self.silence_jump);
            self.flow = Flow::Sending;
        }
        if n >= self.next_jump {
            self.packetizer.jump_seq(self.seq_jump);
            self.next_jump = self
                .next_jump
                .saturating_add(self.jump_every.unwrap_or(u64::MAX));
        }
        let Some(payload) = payload else {
            self.packetizer.lose(1);
            return Verdict::Continue;
        };
        let (seq, timestamp) = self.packetizer.number();
        if self.loss > 0.0 && self.rng.random::<f64>() < self.loss {
            return Verdict::Continue;
        }
        let pkt = OutPacket {
            seq,
            timestamp,
            payload,
        };
        if let Some(held) = self.held.take() {
            out.push(pkt);
            out.push(held);
        } else if self.reorder > 0.0 && self.rng.random::<f64>() < self.reorder {
            self.held = Some(pkt);
        } else {
            out.push(pkt);
        }
        Verdict::Continue
    }

    fn in_silence(&self, n: u64) -> bool {
        match self.silence_start {
            Some(s) if n >= s => self.silence_end.is_none_or(|e| n < e),
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    fn shaper(b: Behaviour) -> Shaper<StdRng> {
        Shaper::new(&b, StdRng::seed_from_u64(7))
    }

    /// Feeds `n` frames and returns every packet sent, and the frame that ended it if dropped.
    fn run(s: &mut Shaper<StdRng>, n: usize) -> (Vec<OutPacket>, Option<usize>) {
        let mut all = Vec::new();
        let mut out = Vec::new();
        for i in 0..n {
            let v = s.on_frame(0, Bytes::from(vec![i as u8]), &mut out);
            all.append(&mut out);
            if v == Verdict::Drop {
                return (all, Some(i));
            }
        }
        (all, None)
    }

    fn secs(s: f64) -> Option<Duration> {
        Some(Duration::from_secs_f64(s))
    }

    #[test]
    fn clean_stream_is_consecutive_from_zero() {
        let (pkts, dropped) = run(&mut shaper(Behaviour::default()), 100);
        assert_eq!(dropped, None);
        assert_eq!(pkts.len(), 100);
        for (i, p) in pkts.iter().enumerate() {
            assert_eq!(p.seq, i as u16);
            assert_eq!(p.timestamp, i as u32 * 960);
            assert_eq!(p.payload[0], i as u8);
        }
    }

    #[test]
    fn silence_then_republish_with_seq_jump() {
        let b = Behaviour {
            silence_after: secs(1.0),
            silence_for: secs(0.5),
            silence_jump: 5_000,
            ..Behaviour::default()
        };
        let mut s = shaper(b);
        let (pkts, _) = run(&mut s, 50);
        assert_eq!(pkts.len(), 50);
        let (pkts, _) = run(&mut s, 25);
        assert!(pkts.is_empty(), "silent for 25 frames");
        assert_eq!(s.flow(), Flow::Silent);
        let (pkts, _) = run(&mut s, 10);
        assert_eq!(s.flow(), Flow::Sending);
        assert_eq!(pkts.len(), 10);
        assert_eq!(pkts[0].seq, 50 + 5_000);
        // The clock ran on through the silence: frame 75 is 75 frames after frame 0.
        assert_eq!(pkts[0].timestamp, 75 * 960);
        assert_eq!(pkts[1].seq, 5_051);
    }

    #[test]
    fn silence_without_end_stays_silent() {
        let b = Behaviour {
            silence_after: secs(0.2),
            ..Behaviour::default()
        };
        let (pkts, dropped) = run(&mut shaper(b), 500);
        assert_eq!(pkts.len(), 10);
        assert_eq!(dropped, None);
    }

    #[test]
    fn drop_after_ends_the_session() {
        let b = Behaviour {
            drop_after: secs(0.5),
            ..Behaviour::default()
        };
        let (pkts, dropped) = run(&mut shaper(b), 100);
        assert_eq!(dropped, Some(25));
        assert_eq!(pkts.len(), 25);
    }

    #[test]
    fn periodic_seq_jumps_keep_the_clock() {
        let b = Behaviour {
            seq_jump_every: secs(0.2),
            seq_jump: 1_000,
            start_seq: 65_000,
            ..Behaviour::default()
        };
        let (pkts, _) = run(&mut shaper(b), 25);
        let seqs: Vec<u16> = pkts.iter().map(|p| p.seq).collect();
        assert_eq!(&seqs[..3], &[65_000, 65_001, 65_002]);
        assert_eq!(seqs[9], 65_009);
        // Frame 10 jumps by 1000 across the 16-bit wrap, frame 20 again.
        assert_eq!(seqs[10], 65_010u16.wrapping_add(1_000));
        assert_eq!(seqs[20], 65_020u16.wrapping_add(2_000));
        for (i, p) in pkts.iter().enumerate() {
            assert_eq!(p.timestamp, i as u32 * 960);
        }
    }

    #[test]
    fn loss_drops_about_the_share_asked_and_leaves_gaps() {
        let b = Behaviour {
            loss_pct: 10.0,
            ..Behaviour::default()
        };
        let (pkts, _) = run(&mut shaper(b), 5_000);
        let lost = 5_000 - pkts.len();
        assert!((400..=600).contains(&lost), "lost {lost}");
        for w in pkts.windows(2) {
            let gap = w[1].seq.wrapping_sub(w[0].seq);
            assert!(gap >= 1);
            assert_eq!(w[1].timestamp - w[0].timestamp, 960 * gap as u32);
        }
    }

    #[test]
    fn reorder_swaps_adjacent_packets_only() {
        let b = Behaviour {
            reorder_pct: 20.0,
            ..Behaviour::default()
        };
        let (pkts, _) = run(&mut shaper(b), 2_000);
        // Nothing lost or duplicated (the last one may still be held).
        let mut seqs: Vec<u16> = pkts.iter().map(|p| p.seq).collect();
        let swapped = seqs.windows(2).filter(|w| w[1] < w[0]).count();
        assert!((200..=450).contains(&swapped), "swapped {swapped}");
        for w in seqs.windows(2) {
            if w[1] < w[0] {
                assert_eq!(w[0] - w[1], 1, "only neighbours swap");
            }
        }
        seqs.sort_unstable();
        assert!(seqs.len() >= 1_999);
        for (i, s) in seqs.iter().enumerate() {
            assert_eq!(*s as usize, i);
        }
    }

    #[test]
    fn missed_frames_count_as_lost() {
        let mut s = shaper(Behaviour::default());
        let mut out = Vec::new();
        s.on_frame(0, Bytes::from_static(b"a"), &mut out);
        s.on_frame(3, Bytes::from_static(b"b"), &mut out);
        assert_eq!(out.len(), 2);
        assert_eq!((out[1].seq, out[1].timestamp), (4, 4 * 960));
    }

    #[test]
    fn held_packet_is_flushed_when_silence_starts() {
        let b = Behaviour {
            reorder_pct: 100.0,
            silence_after: secs(0.02 * 3.0),
            ..Behaviour::default()
        };
        let (pkts, _) = run(&mut shaper(b), 10);
        let seqs: Vec<u16> = pkts.iter().map(|p| p.seq).collect();
        // Frame 0 held, frame 1 sent with it swapped, frame 2 held, flushed at silence.
        assert_eq!(seqs, vec![1, 0, 2]);
    }
}
