//! RTP sequence numbers and timestamps of one session.
//!
//! Kept apart from the sending so the arithmetic (16-bit sequence wrap, 32-bit timestamp
//! wrap, jumps) is testable on its own. One Opus frame is 20 ms = 960 ticks of the 48 kHz
//! RTP clock.

/// RTP clock ticks per 20 ms Opus frame at 48 kHz.
pub const TICKS_PER_FRAME: u32 = 960;

/// Next sequence number and timestamp of one RTP stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Packetizer {
    seq: u16,
    ts: u32,
}

impl Packetizer {
    /// Starts at `start_seq`/`start_ts` (SRS starts both at 0).
    pub fn new(start_seq: u16, start_ts: u32) -> Self {
        Self {
            seq: start_seq,
            ts: start_ts,
        }
    }

    /// Numbers the next frame: returns its `(seq, timestamp)` and advances by one frame.
    pub fn number(&mut self) -> (u16, u32) {
        let cur = (self.seq, self.ts);
        self.seq = self.seq.wrapping_add(1);
        self.ts = self.ts.wrapping_add(TICKS_PER_FRAME);
        cur
    }

    /// Accounts for `frames` numbered but never sent (packet loss): both advance.
    pub fn lose(&mut self, frames: u32) {
        // A u16 sequence wraps every 65 536 frames, so only the low 16 bits matter.
        self.seq = self.seq.wrapping_add(frames as u16);
        self.ts = self.ts.wrapping_add(TICKS_PER_FRAME.wrapping_mul(frames));
    }

    /// Accounts for `frames` of silence with no packets at all: the media clock runs on,
    /// sequence numbers do not (like a publisher that stopped sending).
    pub fn idle(&mut self, frames: u32) {
        self.ts = self.ts.wrapping_add(TICKS_PER_FRAME.wrapping_mul(frames));
    }

    /// Jumps the sequence number by `n` without touching the timestamp.
    pub fn jump_seq(&mut self, n: u16) {
        self.seq = self.seq.wrapping_add(n);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn starts_where_told_and_advances_one_frame() {
        let mut p = Packetizer::new(0, 0);
        assert_eq!(p.number(), (0, 0));
        assert_eq!(p.number(), (1, 960));
        assert_eq!(p.number(), (2, 1920));
        let mut p = Packetizer::new(100, 5);
        assert_eq!(p.number(), (100, 5));
        assert_eq!(p.number(), (101, 965));
    }

    #[test]
    fn sequence_and_timestamp_wrap() {
        let mut p = Packetizer::new(65_534, u32::MAX - 959);
        assert_eq!(p.number(), (65_534, u32::MAX - 959));
        assert_eq!(p.number(), (65_535, 0));
        assert_eq!(p.number(), (0, 960));
    }

    #[test]
    fn loss_leaves_a_gap_in_both() {
        let mut p = Packetizer::new(10, 0);
        p.number();
        p.lose(3);
        assert_eq!(p.number(), (14, 4 * 960));
        let mut p = Packetizer::new(65_535, 0);
        p.lose(70_000);
        assert_eq!(p.number().0, 65_535u16.wrapping_add(70_000u32 as u16));
    }

    #[test]
    fn idle_moves_only_the_clock() {
        let mut p = Packetizer::new(7, 0);
        p.number();
        p.idle(50);
        assert_eq!(p.number(), (8, 51 * 960));
    }

    #[test]
    fn seq_jump_keeps_timestamps_continuous() {
        let mut p = Packetizer::new(65_000, 0);
        p.number();
        p.jump_seq(1_000);
        assert_eq!(p.number(), (465, 960));
        assert_eq!(p.number(), (466, 1920));
    }
}
