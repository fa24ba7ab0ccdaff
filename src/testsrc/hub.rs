//! One Opus encoder per distinct tone pair, shared by every session that plays it.
//!
//! Encoding is the costly part of a test source; sessions of the same tones get the very same
//! payload (a cheap `Bytes` clone) through a broadcast channel. Each encoder task is paced by
//! a 20 ms interval with burst catch-up, so over any long run it emits exactly one frame per
//! 20 ms of wall time, and it stops as soon as no session listens.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use tokio::sync::broadcast;
use tokio::time::MissedTickBehavior;

use super::shaper::FRAME;
use super::tone::ToneEncoder;

/// Frames buffered per listener before a slow one starts missing frames (1 s).
const CHANNEL_FRAMES: usize = 50;

/// One encoded 20 ms frame, numbered so a listener can tell how many it missed.
#[derive(Debug, Clone)]
pub struct EncodedFrame {
    pub index: u64,
    pub payload: Bytes,
}

/// Tone pair (exact bit patterns of the two frequencies) and the encoder's expected loss.
type ToneKey = (u64, u64, u8);

/// Registry of running encoders, keyed by tone pair.
#[derive(Clone, Default)]
pub struct ToneHub {
    encoders: Arc<Mutex<HashMap<ToneKey, broadcast::Sender<EncodedFrame>>>>,
}

impl ToneHub {
    /// Listens to the encoder of `freq_l`/`freq_r` with expected loss `fec_pct`, starting it
    /// if needed. Must be called inside a tokio runtime. Fails only if the Opus encoder cannot
    /// be created.
    pub fn subscribe(
        &self,
        freq_l: f64,
        freq_r: f64,
        fec_pct: u8,
    ) -> Result<broadcast::Receiver<EncodedFrame>, opus::Error> {
        let key = (freq_l.to_bits(), freq_r.to_bits(), fec_pct);
        let mut map = self.lock();
        if let Some(tx) = map.get(&key) {
            return Ok(tx.subscribe());
        }
        let encoder = ToneEncoder::new(freq_l, freq_r, fec_pct)?;
        let (tx, rx) = broadcast::channel(CHANNEL_FRAMES);
        map.insert(key, tx.clone());
        drop(map);
        tokio::spawn(run_encoder(self.clone(), key, encoder, tx));
        Ok(rx)
    }

    /// Number of encoders running (one per distinct tone pair in use).
    pub fn encoders(&self) -> usize {
        self.lock().len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<ToneKey, broadcast::Sender<EncodedFrame>>> {
        // The map stays consistent even if a holder panicked: every update is one call.
        self.encoders.lock().unwrap_or_else(|e| e.into_inner())
    }
}

async fn run_encoder(
    hub: ToneHub,
    key: ToneKey,
    mut encoder: ToneEncoder,
    tx: broadcast::Sender<EncodedFrame>,
) {
    let mut tick = tokio::time::interval(FRAME);
    tick.set_missed_tick_behavior(MissedTickBehavior::Burst);
    let mut index = 0u64;
    loop {
        tick.tick().await;
        {
            // Checked under the map lock, so a session subscribing at this very moment
            // either finds this encoder still listed (and is counted) or starts a new one.
            let mut map = hub.lock();
            if tx.receiver_count() == 0 {
                map.remove(&key);
                tracing::debug!(
                    freq_l = f64::from_bits(key.0),
                    freq_r = f64::from_bits(key.1),
                    fec = key.2,
                    "tone encoder stopped"
                );
                return;
            }
        }
        match encoder.next_packet() {
            Ok(payload) => {
                // A send error means every receiver left; the next tick notices and stops.
                let _ = tx.send(EncodedFrame { index, payload });
            }
            Err(e) => tracing::warn!(error = %e, "Opus encoding failed; frame skipped"),
        }
        index += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    #[tokio::test]
    async fn one_encoder_per_pair_same_payload_for_all() {
        let hub = ToneHub::default();
        let mut a = hub.subscribe(440.0, 660.0, 0).unwrap();
        let mut b = hub.subscribe(440.0, 660.0, 0).unwrap();
        let mut c = hub.subscribe(440.0, 660.0, 10).unwrap();
        let mut d = hub.subscribe(500.0, 660.0, 0).unwrap();
        assert_eq!(hub.encoders(), 3);
        for _ in 0..3 {
            let (fa, fb) = (a.recv().await.unwrap(), b.recv().await.unwrap());
            assert_eq!(fa.index, fb.index);
            assert_eq!(fa.payload, fb.payload);
            // Same allocation: fanned out, not re-encoded.
            assert_eq!(fa.payload.as_ptr(), fb.payload.as_ptr());
            let (fc, fd) = (c.recv().await.unwrap(), d.recv().await.unwrap());
            assert_ne!(fa.payload, fc.payload);
            assert_ne!(fa.payload, fd.payload);
        }
    }

    #[tokio::test]
    async fn encoder_stops_without_listeners_and_restarts() {
        let hub = ToneHub::default();
        let mut a = hub.subscribe(440.0, 660.0, 0).unwrap();
        a.recv().await.unwrap();
        drop(a);
        let deadline = Instant::now() + Duration::from_secs(2);
        while hub.encoders() > 0 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(hub.encoders(), 0);
        let mut again = hub.subscribe(440.0, 660.0, 0).unwrap();
        assert_eq!(again.recv().await.unwrap().index, 0);
    }

    #[tokio::test]
    async fn pacing_matches_wall_time() {
        let hub = ToneHub::default();
        let mut rx = hub.subscribe(440.0, 660.0, 0).unwrap();
        let first = rx.recv().await.unwrap();
        let start = Instant::now();
        let mut last = first.index;
        while start.elapsed() < Duration::from_secs(1) {
            last = rx.recv().await.unwrap().index;
        }
        let frames = last - first.index;
        assert!((48..=52).contains(&frames), "{frames} frames in 1 s");
    }
}
