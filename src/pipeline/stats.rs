//! Per-stream counters, shared by the actors of one stream and read by reporters.
//!
//! Relaxed atomics: each counter has one writer (the actor that owns that stage) and
//! readers only need eventually consistent figures for logs, the API and metrics.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};

use serde::Serialize;

use crate::output::listen::ListenTap;

/// Upper bounds (ms) of the pipeline-latency histogram buckets; a last `+Inf` bucket is
/// implied. 200 ms chunks put most samples between 150 and 300 ms.
pub const LATENCY_BUCKETS_MS: [u64; 11] = [10, 25, 50, 100, 150, 200, 300, 500, 1000, 2500, 5000];

#[derive(Debug, Default)]
pub struct StreamStats {
    pub packets: AtomicU64,
    pub lost: AtomicU64,
    pub concealed_ms: AtomicU64,
    pub late: AtomicU64,
    pub discontinuities: AtomicU64,
    pub decoded_frames: AtomicU64,
    pub chunks: AtomicU64,
    pub bytes: AtomicU64,
    /// Audio held for the consumer: not yet written, or written but not yet confirmed.
    pub buffered_ms: AtomicU64,
    /// Chunks dropped unsent because the consumer was away longer than the replay bound.
    pub dropped_chunks: AtomicU64,
    /// Successful consumer WebSocket handshakes (the first one plus every reconnect).
    pub ws_connects: AtomicU64,
    /// The consumer connection is up right now (false during an outage: audio is buffered).
    pub consumer_connected: AtomicBool,
    /// Why the last consumer connect failed (cleared when connected); written only on
    /// failures, so a lock is fine.
    consumer_error: std::sync::Mutex<Option<String>>,
    pub whep_connects: AtomicU64,
    pub reconnects: AtomicU64,
    /// Sum and count of pipeline latency samples (RTP arrival → WS send), in microseconds.
    pub latency_us_sum: AtomicU64,
    pub latency_count: AtomicU64,
    pub latency_us_max: AtomicU64,
    /// Latency samples per bucket (not cumulative); the last slot is `+Inf`.
    pub latency_buckets: [AtomicU64; LATENCY_BUCKETS_MS.len() + 1],
    /// Live listeners of the converted audio (`GET /v1/streams/{stmId}/listen`). It lives
    /// here, not in a counter-only struct of its own, because every actor of the stream and
    /// the registry already share this `Arc`: no new plumbing. The channel closes (ending every
    /// listener's response) once the registry entry and the stream's actors are all gone, i.e.
    /// when the stream stops or is replaced.
    pub listen: ListenTap,
}

/// A point-in-time copy for printing and serialising.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct StatsSnapshot {
    pub packets: u64,
    pub lost: u64,
    pub concealed_ms: u64,
    pub late: u64,
    pub discontinuities: u64,
    pub chunks: u64,
    pub bytes: u64,
    pub buffered_ms: u64,
    pub dropped_chunks: u64,
    pub ws_connects: u64,
    pub consumer_connected: bool,
    pub whep_connects: u64,
    pub reconnects: u64,
    pub latency_avg_ms: f64,
    pub latency_max_ms: f64,
    /// For the metrics histogram (not shown in the API).
    #[serde(skip)]
    pub latency_sum_us: u64,
    #[serde(skip)]
    pub latency_count: u64,
    #[serde(skip)]
    pub latency_buckets: Vec<u64>,
}

impl StreamStats {
    pub fn set_consumer_error(&self, error: Option<String>) {
        if let Ok(mut e) = self.consumer_error.lock() {
            *e = error;
        }
    }

    /// The last consumer connect error, while the consumer is not connected.
    pub fn consumer_error(&self) -> Option<String> {
        if self.consumer_connected.load(Relaxed) {
            return None;
        }
        self.consumer_error.lock().ok().and_then(|e| e.clone())
    }

    pub fn record_latency(&self, micros: u64) {
        self.latency_us_sum.fetch_add(micros, Relaxed);
        self.latency_count.fetch_add(1, Relaxed);
        self.latency_us_max.fetch_max(micros, Relaxed);
        let slot = LATENCY_BUCKETS_MS
            .iter()
            .position(|&ms| micros <= ms * 1000)
            .unwrap_or(LATENCY_BUCKETS_MS.len());
        self.latency_buckets[slot].fetch_add(1, Relaxed);
    }

    pub fn snapshot(&self) -> StatsSnapshot {
        let count = self.latency_count.load(Relaxed);
        StatsSnapshot {
            packets: self.packets.load(Relaxed),
            lost: self.lost.load(Relaxed),
            concealed_ms: self.concealed_ms.load(Relaxed),
            late: self.late.load(Relaxed),
            discontinuities: self.discontinuities.load(Relaxed),
            chunks: self.chunks.load(Relaxed),
            bytes: self.bytes.load(Relaxed),
            buffered_ms: self.buffered_ms.load(Relaxed),
            dropped_chunks: self.dropped_chunks.load(Relaxed),
            ws_connects: self.ws_connects.load(Relaxed),
            consumer_connected: self.consumer_connected.load(Relaxed),
            whep_connects: self.whep_connects.load(Relaxed),
            reconnects: self.reconnects.load(Relaxed),
            latency_avg_ms: if count == 0 {
                0.0
            } else {
                self.latency_us_sum.load(Relaxed) as f64 / count as f64 / 1000.0
            },
            latency_max_ms: self.latency_us_max.load(Relaxed) as f64 / 1000.0,
            latency_sum_us: self.latency_us_sum.load(Relaxed),
            latency_count: count,
            latency_buckets: self
                .latency_buckets
                .iter()
                .map(|b| b.load(Relaxed))
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshot_averages_latency() {
        let s = StreamStats::default();
        assert_eq!(s.snapshot().latency_avg_ms, 0.0);
        s.record_latency(10_000);
        s.record_latency(30_000);
        s.record_latency(9_000_000);
        let snap = s.snapshot();
        assert!((snap.latency_avg_ms - 3_013.333).abs() < 0.01);
        assert_eq!(snap.latency_max_ms, 9_000.0);
        // 10 ms → bucket "≤ 10 ms", 30 ms → "≤ 50 ms", 9 s → +Inf.
        assert_eq!(snap.latency_buckets[0], 1);
        assert_eq!(snap.latency_buckets[2], 1);
        assert_eq!(snap.latency_buckets[LATENCY_BUCKETS_MS.len()], 1);
        assert_eq!(snap.latency_buckets.iter().sum::<u64>(), 3);
    }
}
