//! ReplayBuffer: the audio a forwarder still owes its consumer (SPEC §4.3).
//!
//! Every chunk goes through this buffer, connected or not. It holds, in `seq` order:
//!
//! - **in flight**: chunks already written on the current connection whose delivery the
//!   consumer has not confirmed yet, then
//! - **unsent**: chunks not written on the current connection (produced while the consumer
//!   was down, or rewound after a connection broke).
//!
//! What "sent" means: a chunk is *delivered* once the consumer's WebSocket endpoint has
//! answered a ping written after it. TCP keeps frames in order, so a pong proves the consumer
//! read every frame before that ping; the forwarder then calls
//! [`ReplayBuffer::confirm_before`]. When a connection breaks, [`ReplayBuffer::rewind`] turns
//! the unconfirmed chunks back into unsent ones and they are written again, first, on the next
//! connection. So nothing the consumer may have missed is lost, and the consumer sees a chunk
//! twice only if the connection broke in the instant between its reading the chunk and our
//! reading its pong (the same `seq` arrives twice; `extended`/`binary` consumers can drop it).
//!
//! The bound is audio duration (frames), not chunk count, so it means the same for every
//! chunk size. Beyond it the oldest chunks go: an unsent one is *dropped* (the consumer never
//! gets it: counted, and visible as a `seq` gap), an in-flight one is merely *unconfirmed*
//! (it was written once, the consumer most likely has it; counted separately).

use std::collections::VecDeque;
use std::time::Duration;

use super::chunker::Chunk;

/// What one [`ReplayBuffer::push`] had to evict to stay within the bound.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Evicted {
    /// Unsent chunks dropped: audio the consumer will never receive.
    pub dropped: u64,
    /// In-flight chunks forgotten before the consumer confirmed them.
    pub unconfirmed: u64,
}

/// A chunk handed out for writing by [`ReplayBuffer::next_unsent`].
#[derive(Debug, Clone, PartialEq)]
pub struct Outgoing {
    pub chunk: Chunk,
    /// False when this chunk was written before (on a connection that broke): a replay.
    pub first_time: bool,
}

/// Bounded, ordered store of chunks not yet confirmed by the consumer. See the module docs.
#[derive(Debug)]
pub struct ReplayBuffer {
    chunks: VecDeque<Chunk>,
    /// The first `in_flight` chunks were written on the current connection.
    in_flight: usize,
    rate: u64,
    max_frames: u64,
    held_frames: u64,
    /// Frames among the unsent chunks (the rest of `held_frames` is in flight).
    unsent_frames: u64,
    /// One past the highest `seq` ever written, on any connection.
    written_end: Option<u64>,
    dropped: u64,
    dropped_frames: u64,
    unconfirmed_evicted: u64,
}

impl ReplayBuffer {
    /// A buffer holding at most `bound` of audio at `sample_rate` (at least one chunk).
    pub fn new(bound: Duration, sample_rate: u32) -> Self {
        let rate = u64::from(sample_rate.max(1));
        Self {
            chunks: VecDeque::new(),
            in_flight: 0,
            rate,
            max_frames: (bound.as_secs_f64() * rate as f64) as u64,
            held_frames: 0,
            unsent_frames: 0,
            written_end: None,
            dropped: 0,
            dropped_frames: 0,
            unconfirmed_evicted: 0,
        }
    }

    /// Appends a new chunk (its `seq` must follow the previous one's) and evicts the oldest
    /// chunks while more than the bound is held. The newest chunk is always kept.
    pub fn push(&mut self, chunk: Chunk) -> Evicted {
        let frames = chunk.frames as u64;
        self.held_frames += frames;
        self.unsent_frames += frames;
        self.chunks.push_back(chunk);
        let mut evicted = Evicted::default();
        while self.held_frames > self.max_frames && self.chunks.len() > 1 {
            let Some(old) = self.chunks.pop_front() else {
                break;
            };
            let frames = old.frames as u64;
            self.held_frames -= frames;
            if self.in_flight > 0 {
                self.in_flight -= 1;
                self.unconfirmed_evicted += 1;
                evicted.unconfirmed += 1;
            } else {
                self.unsent_frames -= frames;
                self.dropped += 1;
                self.dropped_frames += frames;
                evicted.dropped += 1;
            }
        }
        evicted
    }

    /// The oldest unsent chunk, now counted as in flight on the current connection.
    pub fn next_unsent(&mut self) -> Option<Outgoing> {
        let chunk = self.chunks.get(self.in_flight)?.clone();
        self.in_flight += 1;
        self.unsent_frames -= chunk.frames as u64;
        let first_time = self.written_end.is_none_or(|end| chunk.seq >= end);
        if first_time {
            self.written_end = Some(chunk.seq + 1);
        }
        Some(Outgoing { chunk, first_time })
    }

    /// The consumer confirmed everything written before a ping carrying `token` (see
    /// [`ReplayBuffer::ack_token`]): forget the in-flight chunks with `seq < token`.
    /// Returns how many were confirmed.
    pub fn confirm_before(&mut self, token: u64) -> usize {
        let mut n = 0;
        while self.in_flight > 0 && self.chunks.front().is_some_and(|c| c.seq < token) {
            if let Some(c) = self.chunks.pop_front() {
                self.held_frames -= c.frames as u64;
            }
            self.in_flight -= 1;
            n += 1;
        }
        n
    }

    /// The token to put in a ping: one past the last in-flight `seq`, `None` when nothing
    /// is in flight.
    pub fn ack_token(&self) -> Option<u64> {
        self.in_flight
            .checked_sub(1)
            .and_then(|last| self.chunks.get(last))
            .map(|c| c.seq + 1)
    }

    /// The connection broke: in-flight chunks become unsent again, to be replayed first.
    /// Returns how many were rewound.
    pub fn rewind(&mut self) -> usize {
        let n = self.in_flight;
        self.in_flight = 0;
        self.unsent_frames = self.held_frames;
        n
    }

    /// Empties the buffer (giving up at stop); returns the chunks and ms that were held.
    pub fn abandon(&mut self) -> (usize, u64) {
        let out = (self.chunks.len(), self.held_ms());
        self.chunks.clear();
        self.in_flight = 0;
        self.held_frames = 0;
        self.unsent_frames = 0;
        out
    }

    /// `seq` of the oldest unsent chunk (what a new connection starts with).
    pub fn first_unsent_seq(&self) -> Option<u64> {
        self.chunks.get(self.in_flight).map(|c| c.seq)
    }

    /// Chunks held (in flight + unsent).
    pub fn len(&self) -> usize {
        self.chunks.len()
    }

    pub fn is_empty(&self) -> bool {
        self.chunks.is_empty()
    }

    /// Chunks written on the current connection and not confirmed yet.
    pub fn in_flight(&self) -> usize {
        self.in_flight
    }

    /// Chunks waiting to be written.
    pub fn unsent(&self) -> usize {
        self.chunks.len() - self.in_flight
    }

    /// Audio held (in flight + unsent), in ms.
    pub fn held_ms(&self) -> u64 {
        self.held_frames * 1000 / self.rate
    }

    /// Audio waiting to be written, in ms.
    pub fn unsent_ms(&self) -> u64 {
        self.unsent_frames * 1000 / self.rate
    }

    /// Unsent chunks dropped by the bound since the start.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// Audio dropped by the bound since the start, in ms.
    pub fn dropped_ms(&self) -> u64 {
        self.dropped_frames * 1000 / self.rate
    }

    /// In-flight chunks evicted by the bound before the consumer confirmed them.
    pub fn unconfirmed_evicted(&self) -> u64 {
        self.unconfirmed_evicted
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;

    const RATE: u32 = 16_000;
    /// 200 ms at 16 kHz mono.
    const FRAMES: usize = 3_200;

    fn chunk(seq: u64) -> Chunk {
        Chunk {
            seq,
            pts_ms: seq * 200,
            pcm: Bytes::from(vec![seq as u8; FRAMES * 2]),
            frames: FRAMES,
            oldest_arrival: None,
        }
    }

    fn buffer(bound_ms: u64) -> ReplayBuffer {
        ReplayBuffer::new(Duration::from_millis(bound_ms), RATE)
    }

    fn drain_seqs(b: &mut ReplayBuffer) -> Vec<u64> {
        std::iter::from_fn(|| b.next_unsent().map(|o| o.chunk.seq)).collect()
    }

    #[test]
    fn hands_out_in_order_and_keeps_until_confirmed() {
        let mut b = buffer(30_000);
        for s in 0..5 {
            assert_eq!(b.push(chunk(s)), Evicted::default());
        }
        assert_eq!(
            (b.len(), b.unsent(), b.held_ms(), b.unsent_ms()),
            (5, 5, 1_000, 1_000)
        );
        assert_eq!(b.first_unsent_seq(), Some(0));
        assert_eq!(b.ack_token(), None);
        let first = b.next_unsent().unwrap();
        assert!(first.first_time);
        assert_eq!(first.chunk, chunk(0));
        assert_eq!(drain_seqs(&mut b), vec![1, 2, 3, 4]);
        assert!(b.next_unsent().is_none());
        // Written but not confirmed: still held, nothing unsent.
        assert_eq!(
            (b.len(), b.in_flight(), b.unsent(), b.unsent_ms()),
            (5, 5, 0, 0)
        );
        assert_eq!(b.ack_token(), Some(5));
        assert_eq!(b.first_unsent_seq(), None);

        assert_eq!(b.confirm_before(3), 3);
        assert_eq!((b.len(), b.in_flight(), b.held_ms()), (2, 2, 400));
        // A stale token confirms nothing more.
        assert_eq!(b.confirm_before(2), 0);
        assert_eq!(b.confirm_before(5), 2);
        assert!(b.is_empty());
        assert_eq!((b.held_ms(), b.ack_token()), (0, None));
    }

    #[test]
    fn confirmation_never_touches_unsent_chunks() {
        let mut b = buffer(30_000);
        for s in 0..4 {
            b.push(chunk(s));
        }
        b.next_unsent();
        b.next_unsent();
        // A token beyond what was written only confirms what is in flight.
        assert_eq!(b.confirm_before(100), 2);
        assert_eq!((b.len(), b.unsent(), b.first_unsent_seq()), (2, 2, Some(2)));
    }

    #[test]
    fn rewind_replays_unconfirmed_chunks_first_marked_as_replays() {
        let mut b = buffer(30_000);
        for s in 0..6 {
            b.push(chunk(s));
        }
        for _ in 0..4 {
            b.next_unsent();
        }
        assert_eq!(b.confirm_before(2), 2); // 0, 1 delivered; 2, 3 in flight
        assert_eq!(b.rewind(), 2);
        assert_eq!((b.in_flight(), b.unsent(), b.unsent_ms()), (0, 4, 800));
        assert_eq!(b.first_unsent_seq(), Some(2));
        b.push(chunk(6));
        let replay: Vec<(u64, bool)> = std::iter::from_fn(|| b.next_unsent())
            .map(|o| (o.chunk.seq, o.first_time))
            .collect();
        assert_eq!(
            replay,
            vec![(2, false), (3, false), (4, true), (5, true), (6, true)]
        );
        // The consumer confirmed only one chunk of the new connection before it broke too.
        assert_eq!(b.confirm_before(3), 1);
        assert_eq!(b.rewind(), 4);
        assert_eq!(drain_seqs(&mut b), vec![3, 4, 5, 6]);
        assert_eq!(b.ack_token(), Some(7));
        assert_eq!(b.confirm_before(7), 4);
        assert!(b.is_empty());
    }

    #[test]
    fn bound_drops_oldest_unsent_and_counts_them() {
        // 1 s bound = 5 chunks of 200 ms.
        let mut b = buffer(1_000);
        for s in 0..5 {
            assert_eq!(b.push(chunk(s)).dropped, 0);
        }
        assert_eq!(b.held_ms(), 1_000);
        for s in 5..8 {
            assert_eq!(
                b.push(chunk(s)),
                Evicted {
                    dropped: 1,
                    unconfirmed: 0
                }
            );
        }
        assert_eq!((b.dropped(), b.dropped_ms()), (3, 600));
        assert_eq!((b.len(), b.held_ms(), b.unsent_ms()), (5, 1_000, 1_000));
        // The newest audio survives, still in order: the consumer sees the gap as seq 0..3 → 3.
        assert_eq!(drain_seqs(&mut b), vec![3, 4, 5, 6, 7]);
        assert_eq!(b.unconfirmed_evicted(), 0);
    }

    #[test]
    fn bound_forgets_in_flight_chunks_without_calling_them_dropped() {
        let mut b = buffer(600); // 3 chunks
        for s in 0..3 {
            b.push(chunk(s));
        }
        b.next_unsent();
        b.next_unsent(); // 0, 1 in flight, 2 unsent
        let ev = b.push(chunk(3));
        assert_eq!(
            ev,
            Evicted {
                dropped: 0,
                unconfirmed: 1
            }
        );
        assert_eq!((b.in_flight(), b.unsent(), b.ack_token()), (1, 2, Some(2)));
        b.push(chunk(4));
        b.push(chunk(5)); // evicts 1 (in flight), then 2 (unsent)
        assert_eq!((b.dropped(), b.unconfirmed_evicted()), (1, 2));
        assert_eq!((b.in_flight(), b.first_unsent_seq()), (0, Some(3)));
        assert_eq!(drain_seqs(&mut b), vec![3, 4, 5]);
    }

    #[test]
    fn tiny_bound_still_keeps_the_newest_chunk() {
        let mut b = buffer(50);
        b.push(chunk(0));
        assert_eq!(b.len(), 1);
        assert_eq!(b.push(chunk(1)).dropped, 1);
        assert_eq!(
            (b.len(), b.first_unsent_seq(), b.held_ms()),
            (1, Some(1), 200)
        );
    }

    #[test]
    fn short_chunks_count_by_duration() {
        let mut b = ReplayBuffer::new(Duration::from_secs(1), 44_100);
        let mut c = chunk(0);
        c.frames = 441; // 10 ms
        c.pcm = Bytes::from(vec![0; 882]);
        for s in 0..150 {
            b.push(Chunk {
                seq: s,
                ..c.clone()
            });
        }
        // 1 s bound holds exactly 100 chunks of 10 ms.
        assert_eq!(
            (b.len(), b.held_ms(), b.dropped(), b.dropped_ms()),
            (100, 1_000, 50, 500)
        );
    }

    #[test]
    fn abandon_reports_what_was_held() {
        let mut b = buffer(30_000);
        for s in 0..3 {
            b.push(chunk(s));
        }
        b.next_unsent();
        assert_eq!(b.abandon(), (3, 600));
        assert!(b.is_empty());
        assert_eq!(
            (b.in_flight(), b.unsent_ms(), b.next_unsent()),
            (0, 0, None)
        );
    }
}
