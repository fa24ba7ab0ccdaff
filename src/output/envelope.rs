//! Wraps chunks for the consumer (SPEC §4.1): `seed`, `extended` or `binary` envelopes.
//!
//! `seed` must stay byte-compatible with the replaced system: exactly
//! `{"traceId":…,"stmId":…,"timestamp":<float>,"data":"<base64>"}` in that order.
//! `extended` adds `seq`, `pts`, `sampleRate`, `channels`, `epoch` and `node`, so a consumer
//! can see exactly what was replayed or lost. `binary` sends a JSON start frame, raw PCM in
//! binary frames, and a JSON stop frame.
//!
//! Encoding runs once per chunk for every stream, so it is built for cost: the constant
//! parts of the JSON (with the ids escaped once by serde_json) are rendered when the encoder
//! is made, and a chunk is written into a single `String` allocated at its final size —
//! numbers and base64 are appended in place, with no intermediate buffers.

use std::fmt::Write as _;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use bytes::Bytes;

use super::chunker::Chunk;
use crate::config::{EnvelopeKind, OutputFormat};

/// Who a stream is, as the consumer sees it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct StreamIdentity {
    pub stm_id: String,
    pub trace_id: String,
    /// Node id of the sender (extended/binary envelopes).
    pub node: String,
    /// Lease epoch (fencing token, SPEC §6).
    pub epoch: u64,
}

/// One WebSocket message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WsFrame {
    Text(String),
    Binary(Bytes),
}

/// Longest decimal rendering of a u64.
const U64_DIGITS: usize = 20;
/// Generous bound for a rendered f64 timestamp (e.g. `1712345678.1234567`).
const TIMESTAMP_CHARS: usize = 32;

/// Turns chunks into WebSocket frames for one stream. See the module docs.
#[derive(Debug, Clone)]
pub struct EnvelopeEncoder {
    kind: EnvelopeKind,
    id: StreamIdentity,
    sample_rate: u32,
    channels: u16,
    /// `{"traceId":…,"stmId":…,` followed by `"timestamp":` (seed) or `"seq":` (extended).
    prefix: String,
    /// Extended only: `,"sampleRate":…,"channels":…,"epoch":…,"node":…,"timestamp":`.
    middle: String,
}

impl EnvelopeEncoder {
    pub fn new(kind: EnvelopeKind, id: StreamIdentity, format: &OutputFormat) -> Self {
        let mut enc = Self {
            kind,
            id,
            sample_rate: format.sample_rate,
            channels: format.channels,
            prefix: String::new(),
            middle: String::new(),
        };
        enc.render();
        enc
    }

    pub fn kind(&self) -> EnvelopeKind {
        self.kind
    }

    pub fn identity(&self) -> &StreamIdentity {
        &self.id
    }

    /// A new lease epoch (after a takeover); later frames carry it.
    pub fn set_epoch(&mut self, epoch: u64) {
        self.id.epoch = epoch;
        self.render();
    }

    /// The frame to send right after connecting (binary envelope only).
    pub fn start_frame(&self, next_seq: u64) -> Option<WsFrame> {
        (self.kind == EnvelopeKind::Binary).then(|| {
            let v = serde_json::json!({
                "event": "start",
                "stmId": self.id.stm_id,
                "traceId": self.id.trace_id,
                "sampleRate": self.sample_rate,
                "channels": self.channels,
                "format": "s16le",
                "epoch": self.id.epoch,
                "node": self.id.node,
                "seq": next_seq,
            });
            WsFrame::Text(v.to_string())
        })
    }

    /// The frame to send before closing (binary envelope only).
    pub fn stop_frame(&self, reason: &str) -> Option<WsFrame> {
        (self.kind == EnvelopeKind::Binary).then(|| {
            WsFrame::Text(serde_json::json!({ "event": "stop", "reason": reason }).to_string())
        })
    }

    /// Wraps one chunk. `unix_time_secs` is the send time (the seed `timestamp`).
    pub fn encode(&mut self, chunk: &Chunk, unix_time_secs: f64) -> WsFrame {
        let mut s = match self.kind {
            EnvelopeKind::Binary => return WsFrame::Binary(chunk.pcm.clone()),
            EnvelopeKind::Seed => {
                let mut s = String::with_capacity(self.capacity_for(chunk.pcm.len()));
                s.push_str(&self.prefix);
                s
            }
            EnvelopeKind::Extended => {
                let mut s = String::with_capacity(self.capacity_for(chunk.pcm.len()));
                s.push_str(&self.prefix);
                // Writing into a String cannot fail.
                let _ = write!(s, "{},\"pts\":{}", chunk.seq, chunk.pts_ms);
                s.push_str(&self.middle);
                s
            }
        };
        push_timestamp(&mut s, unix_time_secs);
        s.push_str(",\"data\":\"");
        BASE64.encode_string(&chunk.pcm, &mut s);
        s.push_str("\"}");
        WsFrame::Text(s)
    }

    /// Exact upper bound of an encoded text frame, so that `encode` allocates once.
    fn capacity_for(&self, pcm_len: usize) -> usize {
        let base64_len = pcm_len.div_ceil(3) * 4;
        let numbers = match self.kind {
            EnvelopeKind::Extended => 2 * U64_DIGITS + ",\"pts\":".len(),
            _ => 0,
        };
        self.prefix.len()
            + numbers
            + self.middle.len()
            + TIMESTAMP_CHARS
            + ",\"data\":\"".len()
            + base64_len
            + "\"}".len()
    }

    /// Pre-renders the constant parts of the text envelopes.
    fn render(&mut self) {
        let trace = json_string(&self.id.trace_id);
        let stm = json_string(&self.id.stm_id);
        self.prefix.clear();
        self.middle.clear();
        match self.kind {
            EnvelopeKind::Seed => {
                let _ = write!(
                    self.prefix,
                    "{{\"traceId\":{trace},\"stmId\":{stm},\"timestamp\":"
                );
            }
            EnvelopeKind::Extended => {
                let _ = write!(
                    self.prefix,
                    "{{\"traceId\":{trace},\"stmId\":{stm},\"seq\":"
                );
                let _ = write!(
                    self.middle,
                    ",\"sampleRate\":{},\"channels\":{},\"epoch\":{},\"node\":{},\"timestamp\":",
                    self.sample_rate,
                    self.channels,
                    self.id.epoch,
                    json_string(&self.id.node)
                );
            }
            EnvelopeKind::Binary => {}
        }
    }
}

/// A JSON string literal (quoted and escaped).
fn json_string(s: &str) -> String {
    serde_json::Value::from(s).to_string()
}

/// Appends `t` as a JSON number that always reads as a float (`1700000000.0`, never
/// `1700000000`), as Python's `json.dumps(time.time())` did in the replaced system.
fn push_timestamp(s: &mut String, t: f64) {
    if !t.is_finite() {
        s.push_str("0.0");
        return;
    }
    let start = s.len();
    let _ = write!(s, "{t}");
    if !s[start..].contains(['.', 'e', 'E']) {
        s.push_str(".0");
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use serde_json::Value;

    use super::*;

    fn identity() -> StreamIdentity {
        StreamIdentity {
            stm_id: "room-1:mic.A".into(),
            trace_id: "0af7651916cd43dd8448eb211c80319c".into(),
            node: "node-a".into(),
            epoch: 7,
        }
    }

    fn chunk(pcm: &[u8]) -> Chunk {
        Chunk {
            seq: 12,
            pts_ms: 2_400,
            pcm: Bytes::copy_from_slice(pcm),
            frames: pcm.len() / 2,
            oldest_arrival: None,
        }
    }

    fn text(frame: WsFrame) -> String {
        match frame {
            WsFrame::Text(s) => s,
            WsFrame::Binary(_) => panic!("expected a text frame"),
        }
    }

    fn keys(v: &Value) -> BTreeSet<String> {
        v.as_object().unwrap().keys().cloned().collect()
    }

    fn set(names: &[&str]) -> BTreeSet<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn seed_has_exactly_four_fields_in_order() {
        let fmt = OutputFormat::default();
        let mut enc = EnvelopeEncoder::new(EnvelopeKind::Seed, identity(), &fmt);
        let pcm: Vec<u8> = (0..6_400u32).map(|i| (i * 7) as u8).collect();
        let s = text(enc.encode(&chunk(&pcm), 1_712_345_678.25));
        assert!(
            s.starts_with(
                "{\"traceId\":\"0af7651916cd43dd8448eb211c80319c\",\"stmId\":\"room-1:mic.A\",\"timestamp\":1712345678.25,\"data\":\""
            ),
            "{}",
            &s[..120]
        );
        assert!(s.ends_with("\"}"));
        let v: Value = serde_json::from_str(&s).unwrap();
        assert_eq!(keys(&v), set(&["traceId", "stmId", "timestamp", "data"]));
        assert!(v["timestamp"].is_f64());
        let data = BASE64.decode(v["data"].as_str().unwrap()).unwrap();
        assert_eq!(data, pcm);
        // Allocated once at the right size: no reallocation happened.
        assert_eq!(s.capacity(), enc.capacity_for(pcm.len()));
    }

    #[test]
    fn integral_timestamp_is_still_a_float() {
        let fmt = OutputFormat::default();
        let mut enc = EnvelopeEncoder::new(EnvelopeKind::Seed, identity(), &fmt);
        let s = text(enc.encode(&chunk(&[1, 2]), 1_700_000_000.0));
        assert!(s.contains("\"timestamp\":1700000000.0,"), "{s}");
        let s = text(enc.encode(&chunk(&[1, 2]), f64::NAN));
        assert!(s.contains("\"timestamp\":0.0,"), "{s}");
        let v: Value = serde_json::from_str(&s).unwrap();
        assert!(v["timestamp"].is_f64());
    }

    #[test]
    fn extended_adds_position_format_and_lease() {
        let fmt = OutputFormat {
            sample_rate: 44_100,
            channels: 2,
            ..OutputFormat::default()
        };
        let mut enc = EnvelopeEncoder::new(EnvelopeKind::Extended, identity(), &fmt);
        let pcm = [1u8, 2, 3, 4, 5, 6, 7, 8];
        let s = text(enc.encode(&chunk(&pcm), 1.5));
        let v: Value = serde_json::from_str(&s).unwrap();
        assert_eq!(
            keys(&v),
            set(&[
                "traceId",
                "stmId",
                "timestamp",
                "data",
                "seq",
                "pts",
                "sampleRate",
                "channels",
                "epoch",
                "node"
            ])
        );
        assert_eq!(v["seq"], 12);
        assert_eq!(v["pts"], 2_400);
        assert_eq!(v["sampleRate"], 44_100);
        assert_eq!(v["channels"], 2);
        assert_eq!(v["epoch"], 7);
        assert_eq!(v["node"], "node-a");
        assert_eq!(v["timestamp"], 1.5);
        assert!(v["seq"].is_u64() && v["pts"].is_u64());
        assert_eq!(BASE64.decode(v["data"].as_str().unwrap()).unwrap(), pcm);
        assert!(s.capacity() == enc.capacity_for(pcm.len()));

        enc.set_epoch(8);
        let v: Value = serde_json::from_str(&text(enc.encode(&chunk(&pcm), 2.0))).unwrap();
        assert_eq!(v["epoch"], 8);
    }

    #[test]
    fn odd_ids_are_escaped() {
        let id = StreamIdentity {
            stm_id: "a\"b\\c\n\u{1}é😀".into(),
            trace_id: "</script>\t".into(),
            node: "n\"ode".into(),
            epoch: u64::MAX,
        };
        for kind in [EnvelopeKind::Seed, EnvelopeKind::Extended] {
            let mut enc = EnvelopeEncoder::new(kind, id.clone(), &OutputFormat::default());
            let v: Value = serde_json::from_str(&text(enc.encode(&chunk(&[9; 5]), 3.25))).unwrap();
            assert_eq!(v["stmId"], id.stm_id.as_str());
            assert_eq!(v["traceId"], id.trace_id.as_str());
            if kind == EnvelopeKind::Extended {
                assert_eq!(v["node"], id.node.as_str());
                assert_eq!(v["epoch"], u64::MAX);
            }
        }
    }

    #[test]
    fn binary_sends_start_raw_pcm_and_stop() {
        let fmt = OutputFormat {
            envelope: EnvelopeKind::Binary,
            ..OutputFormat::default()
        };
        let mut enc = EnvelopeEncoder::new(EnvelopeKind::Binary, identity(), &fmt);
        let start: Value = serde_json::from_str(&text(enc.start_frame(42).unwrap())).unwrap();
        assert_eq!(
            keys(&start),
            set(&[
                "event",
                "stmId",
                "traceId",
                "sampleRate",
                "channels",
                "format",
                "epoch",
                "node",
                "seq"
            ])
        );
        assert_eq!(start["event"], "start");
        assert_eq!(start["format"], "s16le");
        assert_eq!(start["sampleRate"], 16_000);
        assert_eq!(start["channels"], 1);
        assert_eq!(start["seq"], 42);
        assert_eq!(start["epoch"], 7);

        let c = chunk(&[1, 0, 2, 0]);
        assert_eq!(enc.encode(&c, 0.0), WsFrame::Binary(c.pcm.clone()));

        let stop: Value = serde_json::from_str(&text(enc.stop_frame("deleted").unwrap())).unwrap();
        assert_eq!(keys(&stop), set(&["event", "reason"]));
        assert_eq!(
            (stop["event"].as_str(), stop["reason"].as_str()),
            (Some("stop"), Some("deleted"))
        );
    }

    #[test]
    fn text_envelopes_have_no_start_or_stop_frames() {
        for kind in [EnvelopeKind::Seed, EnvelopeKind::Extended] {
            let enc = EnvelopeEncoder::new(kind, identity(), &OutputFormat::default());
            assert!(enc.start_frame(0).is_none());
            assert!(enc.stop_frame("x").is_none());
        }
    }
}
