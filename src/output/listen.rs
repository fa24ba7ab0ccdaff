//! [`ListenTap`]: fans a stream's converted PCM out to live listeners
//! (`GET /v1/streams/{stmId}/listen`, SPEC §5), next to the consumer path and never in its way.
//!
//! Built on a bounded `tokio::sync::broadcast` channel of s16le frames:
//! - nobody listening (the normal case) costs one uncontended lock to read the receiver
//!   count per PCM message: no copy, no allocation;
//! - with listeners, each frame is copied once into a shared [`Bytes`] that every listener
//!   reads (a refcount, not a copy, per listener);
//! - the channel keeps at most [`LISTEN_CAPACITY`] frames. A listener that falls further
//!   behind (slow network, a paused browser tab) is told so by the channel and jumps to live
//!   ([`Listener::next`]); the publisher never waits for anyone, so a listener can never
//!   stall the stream or its consumer.

use bytes::{BufMut, Bytes, BytesMut};
use tokio::sync::broadcast::{self, error::RecvError};

/// Frames kept for listeners: about 2 s of 20 ms frames (Opus' usual packet duration; one
/// PCM message per packet). Bounds a stalled listener's memory at 2 s of audio per stream.
pub const LISTEN_CAPACITY: usize = 100;

/// The publishing side, one per stream; clones publish to the same listeners.
#[derive(Debug, Clone)]
pub struct ListenTap {
    tx: broadcast::Sender<Bytes>,
}

impl Default for ListenTap {
    fn default() -> Self {
        Self::with_capacity(LISTEN_CAPACITY)
    }
}

impl ListenTap {
    /// A tap keeping at most `capacity` frames (at least 1) for listeners that lag.
    pub fn with_capacity(capacity: usize) -> Self {
        Self {
            tx: broadcast::Sender::new(capacity.max(1)),
        }
    }

    /// Offers interleaved PCM to the current listeners as s16le bytes. Returns whether any
    /// listener was there (and so whether the samples were copied at all). Never blocks.
    pub fn publish(&self, samples: &[i16]) -> bool {
        if samples.is_empty() || self.tx.receiver_count() == 0 {
            return false;
        }
        let mut buf = BytesMut::with_capacity(samples.len() * 2);
        for &s in samples {
            buf.put_i16_le(s);
        }
        // Fails only if the last listener left since the count above: nothing to do then.
        self.tx.send(buf.freeze()).is_ok()
    }

    /// A new listener; it receives the frames published from now on.
    pub fn subscribe(&self) -> Listener {
        Listener {
            rx: self.tx.subscribe(),
            skipped: 0,
        }
    }

    /// Listeners connected right now.
    pub fn listeners(&self) -> usize {
        self.tx.receiver_count()
    }

    /// Frames held for listeners that have not read them yet (at most the capacity).
    pub fn queued(&self) -> usize {
        self.tx.len()
    }
}

/// One listener's end of a [`ListenTap`].
#[derive(Debug)]
pub struct Listener {
    rx: broadcast::Receiver<Bytes>,
    skipped: u64,
}

impl Listener {
    /// The next s16le frame, or `None` once the stream is gone (every [`ListenTap`] clone
    /// dropped: the stream stopped or was replaced).
    ///
    /// A listener that fell more than the capacity behind skips to live: the frames still
    /// queued for it are old by then, and playing them would only add latency, so they are
    /// dropped along with the ones the channel already overwrote (counted in
    /// [`Self::skipped_frames`]).
    pub async fn next(&mut self) -> Option<Bytes> {
        loop {
            match self.rx.recv().await {
                Ok(frame) => return Some(frame),
                Err(RecvError::Lagged(lost)) => {
                    let stale = self.rx.len() as u64;
                    self.skipped += lost + stale;
                    self.rx = self.rx.resubscribe();
                    tracing::debug!(
                        skipped = lost + stale,
                        total_skipped = self.skipped,
                        "listener fell behind; skipping to live audio"
                    );
                }
                Err(RecvError::Closed) => return None,
            }
        }
    }

    /// Frames this listener missed because it fell behind.
    pub fn skipped_frames(&self) -> u64 {
        self.skipped
    }
}

#[cfg(test)]
mod tests {
    use futures_util::FutureExt;

    use super::*;

    fn frame(v: i16) -> Vec<i16> {
        vec![v, -v, 0x0102]
    }

    fn bytes_of(v: i16) -> Bytes {
        let mut b = BytesMut::new();
        for s in frame(v) {
            b.put_i16_le(s);
        }
        b.freeze()
    }

    #[test]
    fn without_listeners_publish_does_no_work() {
        let tap = ListenTap::default();
        assert_eq!(tap.listeners(), 0);
        for i in 0..1_000 {
            assert!(!tap.publish(&frame(i)));
        }
        assert_eq!(tap.queued(), 0, "nothing is kept for nobody");

        // A listener that came and went leaves it as cheap as before.
        drop(tap.subscribe());
        assert!(!tap.publish(&frame(1)));
        assert_eq!(tap.queued(), 0);
    }

    #[test]
    fn every_listener_gets_every_frame_as_s16le() {
        let tap = ListenTap::default();
        let mut a = tap.subscribe();
        let mut b = tap.subscribe();
        assert_eq!(tap.listeners(), 2);
        for i in 1..=5 {
            assert!(tap.publish(&frame(i * 1000)));
        }
        for i in 1..=5 {
            let want = bytes_of(i * 1000);
            assert_eq!(a.next().now_or_never(), Some(Some(want.clone())));
            assert_eq!(b.next().now_or_never(), Some(Some(want)));
        }
        // Nothing more yet: the listener waits, it does not end.
        assert_eq!(a.next().now_or_never(), None);
        assert_eq!((a.skipped_frames(), b.skipped_frames()), (0, 0));
    }

    #[test]
    fn late_listener_starts_at_live() {
        let tap = ListenTap::default();
        let _early = tap.subscribe();
        tap.publish(&frame(1));
        let mut late = tap.subscribe();
        tap.publish(&frame(2));
        assert_eq!(late.next().now_or_never(), Some(Some(bytes_of(2))));
    }

    #[test]
    fn stalled_listener_never_blocks_and_skips_to_live() {
        let tap = ListenTap::with_capacity(16);
        let mut stalled = tap.subscribe();
        let mut reader = tap.subscribe();
        for i in 0..1_000 {
            // Returns at once every time although `stalled` never reads.
            assert!(tap.publish(&frame(i)));
            assert!(tap.queued() <= 16, "memory bounded by the capacity");
            assert_eq!(reader.next().now_or_never(), Some(Some(bytes_of(i))));
        }
        assert_eq!(tap.queued(), 16);

        // The stalled listener learns it lagged, drops the backlog and waits for live audio...
        assert_eq!(stalled.next().now_or_never(), None);
        assert_eq!(stalled.skipped_frames(), 1_000);
        // ...which it then gets, in order.
        tap.publish(&frame(7_000));
        tap.publish(&frame(7_001));
        assert_eq!(stalled.next().now_or_never(), Some(Some(bytes_of(7_000))));
        assert_eq!(stalled.next().now_or_never(), Some(Some(bytes_of(7_001))));
        assert_eq!(stalled.skipped_frames(), 1_000);
    }

    #[test]
    fn listener_ends_when_the_stream_is_gone() {
        let tap = ListenTap::default();
        let mut l = tap.subscribe();
        let clone = tap.clone();
        tap.publish(&frame(3));
        drop(tap);
        // Queued audio is still delivered; while a clone lives the listener just waits...
        assert_eq!(l.next().now_or_never(), Some(Some(bytes_of(3))));
        assert_eq!(l.next().now_or_never(), None);
        // ...and reported once the last clone is gone.
        drop(clone);
        assert_eq!(l.next().now_or_never(), Some(None));
    }
}
