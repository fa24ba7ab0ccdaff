//! What a consumer received, per stream: the plain core of `whep-bridge sink`.
//!
//! Understands all three envelopes (SPEC §4.1) so an operator can point a stream at the sink
//! and see whether audio arrives at the expected pace, whatever the format.

use std::collections::BTreeMap;
use std::time::Instant;

use base64::Engine as _;
use serde_json::Value;

/// Counters for one stream.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StreamTally {
    pub chunks: u64,
    pub bytes: u64,
    /// Seconds of audio received (bytes / (rate · channels · 2)).
    pub seconds: f64,
    /// `seq` gaps seen with `extended` (chunks missing between consecutive messages).
    pub seq_gaps: u64,
    pub last_seq: Option<u64>,
    pub sample_rate: u32,
    pub channels: u16,
    /// When the first and the latest audio of this stream arrived.
    pub first_at: Option<Instant>,
    pub last_at: Option<Instant>,
}

impl StreamTally {
    /// Audio received per second of wall time between the first and the latest chunk
    /// (1.0 = real time); the first chunk's own duration counts as elapsed. Measured over
    /// what arrived, so it stays meaningful after the stream ends.
    pub fn pace(&self) -> f64 {
        match (self.first_at, self.last_at) {
            (Some(first), Some(last)) if self.chunks > 0 => {
                let first_chunk = self.seconds / self.chunks as f64;
                self.seconds / (last.duration_since(first).as_secs_f64() + first_chunk)
            }
            _ => 0.0,
        }
    }
}

/// Per-connection parsing state (binary mode: the start frame names the stream).
#[derive(Debug, Default)]
pub struct ConnectionState {
    binary_stream: Option<String>,
}

/// Tallies of every stream seen, keyed by `stmId`.
#[derive(Debug, Default)]
pub struct Tally {
    pub streams: BTreeMap<String, StreamTally>,
    /// Messages that were not a recognised envelope.
    pub malformed: u64,
}

fn fmt_of(v: &Value) -> (u32, u16) {
    let rate = v
        .get("sampleRate")
        .and_then(Value::as_u64)
        .unwrap_or(16_000) as u32;
    let ch = v.get("channels").and_then(Value::as_u64).unwrap_or(1) as u16;
    (rate.max(1), ch.max(1))
}

impl Tally {
    fn add_audio(&mut self, stm_id: &str, bytes: usize, rate: u32, channels: u16, now: Instant) {
        let t = self.streams.entry(stm_id.to_owned()).or_default();
        t.first_at.get_or_insert(now);
        t.last_at = Some(now);
        t.chunks += 1;
        t.bytes += bytes as u64;
        t.sample_rate = rate;
        t.channels = channels;
        t.seconds += bytes as f64 / (rate as f64 * channels as f64 * 2.0);
    }

    /// A text frame: a seed/extended chunk, or a binary-mode start/stop event.
    pub fn text(&mut self, conn: &mut ConnectionState, text: &str, now: Instant) {
        let Ok(v) = serde_json::from_str::<Value>(text) else {
            self.malformed += 1;
            return;
        };
        let stm_id = v.get("stmId").and_then(Value::as_str).map(str::to_owned);
        match (v.get("event").and_then(Value::as_str), stm_id) {
            (Some("start"), Some(id)) => {
                let (rate, ch) = fmt_of(&v);
                let t = self.streams.entry(id.clone()).or_default();
                t.sample_rate = rate;
                t.channels = ch;
                conn.binary_stream = Some(id);
            }
            (Some("stop"), _) => conn.binary_stream = None,
            (None, Some(id)) => {
                let data = v.get("data").and_then(Value::as_str).unwrap_or_default();
                let Ok(pcm) = base64::engine::general_purpose::STANDARD.decode(data) else {
                    self.malformed += 1;
                    return;
                };
                let (rate, ch) = fmt_of(&v);
                self.add_audio(&id, pcm.len(), rate, ch, now);
                if let Some(seq) = v.get("seq").and_then(Value::as_u64) {
                    let t = self.streams.entry(id).or_default();
                    if let Some(last) = t.last_seq {
                        t.seq_gaps += seq.saturating_sub(last + 1);
                    }
                    t.last_seq = Some(seq);
                }
            }
            _ => self.malformed += 1,
        }
    }

    /// A binary frame: raw PCM of the stream announced by the connection's start frame.
    pub fn binary(&mut self, conn: &ConnectionState, len: usize, now: Instant) {
        match conn.binary_stream.clone() {
            Some(id) => {
                let (rate, ch) = self
                    .streams
                    .get(&id)
                    .map(|t| (t.sample_rate, t.channels))
                    .unwrap_or((16_000, 1));
                self.add_audio(&id, len, rate, ch, now);
            }
            None => self.malformed += 1,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b64(n: usize) -> String {
        base64::engine::general_purpose::STANDARD.encode(vec![0u8; n])
    }

    #[test]
    fn seed_chunks_count_seconds_at_16k_mono() {
        let mut t = Tally::default();
        let mut c = ConnectionState::default();
        let msg = format!(
            r#"{{"traceId":"t","stmId":"a","timestamp":1.5,"data":"{}"}}"#,
            b64(6400)
        );
        t.text(&mut c, &msg, Instant::now());
        t.text(&mut c, &msg, Instant::now());
        let a = &t.streams["a"];
        assert_eq!(a.chunks, 2);
        assert!((a.seconds - 0.4).abs() < 1e-9);
        // Two 200 ms chunks, the second 200 ms after the first: real time.
        let first = a.first_at.unwrap();
        let mut b = a.clone();
        b.last_at = Some(first + std::time::Duration::from_millis(200));
        assert!((b.pace() - 1.0).abs() < 1e-9, "{}", b.pace());
    }

    #[test]
    fn extended_seq_gaps_are_counted() {
        let mut t = Tally::default();
        let mut c = ConnectionState::default();
        for seq in [0, 1, 4] {
            let msg = format!(
                r#"{{"traceId":"t","stmId":"a","timestamp":1.5,"data":"{}","seq":{seq},"pts":0,"sampleRate":8000,"channels":1,"epoch":0,"node":"n"}}"#,
                b64(3200)
            );
            t.text(&mut c, &msg, Instant::now());
        }
        let a = &t.streams["a"];
        assert_eq!(a.seq_gaps, 2);
        assert!((a.seconds - 0.6).abs() < 1e-9);
    }

    #[test]
    fn binary_frames_belong_to_the_started_stream() {
        let mut t = Tally::default();
        let mut c = ConnectionState::default();
        t.binary(&c, 100, Instant::now());
        assert_eq!(t.malformed, 1);
        t.text(
            &mut c,
            r#"{"event":"start","stmId":"b","traceId":"t","sampleRate":48000,"channels":2,"format":"s16le","epoch":0,"node":"n","seq":0}"#,
            Instant::now(),
        );
        t.binary(&c, 192_000, Instant::now());
        assert!((t.streams["b"].seconds - 1.0).abs() < 1e-9);
        t.text(
            &mut c,
            r#"{"event":"stop","reason":"stopped"}"#,
            Instant::now(),
        );
        t.binary(&c, 10, Instant::now());
        assert_eq!(t.malformed, 2);
        t.text(&mut c, "not json", Instant::now());
        assert_eq!(t.malformed, 3);
    }
}
