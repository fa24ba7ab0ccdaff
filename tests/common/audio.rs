//! Decoding what the consumer received back into PCM, plus small PCM utilities.
//!
//! The `seed` envelope (SPEC §4.1) must stay byte-compatible with the system being replaced,
//! so [`decode_seed_json`] is strict on purpose: exactly the four fields, `timestamp` a JSON
//! float, `data` standard base64 of whole s16le samples. Any drift fails the test loudly.

use std::collections::BTreeMap;
use std::time::Instant;

use base64::Engine as _;

use super::ws_sink::{WsMessage, WsPayload};

/// The four fields of a seed chunk, with the PCM decoded.
#[derive(Debug, Clone, PartialEq)]
pub struct SeedChunk {
    pub trace_id: String,
    pub stm_id: String,
    /// Seconds since the Unix epoch at send time.
    pub timestamp: f64,
    pub pcm: Vec<i16>,
}

/// Per-chunk facts kept by [`decode_seed`] (the PCM itself is concatenated).
#[derive(Debug, Clone, PartialEq)]
pub struct SeedMeta {
    pub trace_id: String,
    pub stm_id: String,
    pub timestamp: f64,
    /// Samples in this chunk.
    pub samples: usize,
    /// Offset of this chunk's first sample in the concatenated PCM.
    pub offset: usize,
    /// Connection index and arrival time at the sink.
    pub conn: usize,
    pub at: Instant,
}

/// Parse one seed text frame; panics with the frame on any deviation from SPEC §4.1.
pub fn decode_seed_json(text: &str) -> SeedChunk {
    let v: serde_json::Value = serde_json::from_str(text)
        .unwrap_or_else(|e| panic!("seed frame is not JSON ({e}): {text:.200}"));
    let obj = v
        .as_object()
        .unwrap_or_else(|| panic!("seed frame is not an object: {text:.200}"));
    let mut keys: Vec<&str> = obj.keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        ["data", "stmId", "timestamp", "traceId"],
        "seed frame must have exactly traceId, stmId, timestamp, data: {text:.200}"
    );
    let field_str = |k: &str| -> String {
        obj[k]
            .as_str()
            .unwrap_or_else(|| panic!("seed field {k} must be a string: {text:.200}"))
            .to_string()
    };
    let ts = &obj["timestamp"];
    assert!(
        ts.is_f64(),
        "seed timestamp must be a JSON float (seconds since epoch), got {ts}"
    );
    let timestamp = ts.as_f64().unwrap_or_default();
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(field_str("data"))
        .unwrap_or_else(|e| panic!("seed data is not standard base64: {e}"));
    assert!(
        bytes.len() % 2 == 0,
        "seed data must be whole s16le samples, got {} bytes",
        bytes.len()
    );
    SeedChunk {
        trace_id: field_str("traceId"),
        stm_id: field_str("stmId"),
        timestamp,
        pcm: s16le_to_i16(&bytes),
    }
}

/// Concatenate the PCM of every seed frame in `msgs` (arrival order), with per-chunk facts.
///
/// Close frames are skipped; a binary frame is a test failure (seed is text-only). With
/// several streams on one connection use [`decode_seed_by_stream`] instead.
pub fn decode_seed(msgs: &[WsMessage]) -> (Vec<i16>, Vec<SeedMeta>) {
    let mut pcm = Vec::new();
    let mut metas = Vec::new();
    for m in msgs {
        match &m.payload {
            WsPayload::Text(t) => {
                let chunk = decode_seed_json(t);
                metas.push(SeedMeta {
                    trace_id: chunk.trace_id,
                    stm_id: chunk.stm_id,
                    timestamp: chunk.timestamp,
                    samples: chunk.pcm.len(),
                    offset: pcm.len(),
                    conn: m.conn,
                    at: m.at,
                });
                pcm.extend_from_slice(&chunk.pcm);
            }
            WsPayload::Binary(b) => panic!("seed envelope got a binary frame of {} bytes", b.len()),
            WsPayload::Close(_) => {}
        }
    }
    (pcm, metas)
}

/// [`decode_seed`] split by `stmId` (for `wsMode: shared`, where streams are multiplexed).
pub fn decode_seed_by_stream(msgs: &[WsMessage]) -> BTreeMap<String, (Vec<i16>, Vec<SeedMeta>)> {
    let mut by: BTreeMap<String, Vec<WsMessage>> = BTreeMap::new();
    for m in msgs {
        if let WsPayload::Text(t) = &m.payload {
            let stm = decode_seed_json(t).stm_id;
            by.entry(stm).or_default().push(m.clone());
        }
    }
    by.into_iter().map(|(k, v)| (k, decode_seed(&v))).collect()
}

/// Little-endian s16 bytes to samples (a trailing odd byte is ignored).
pub fn s16le_to_i16(bytes: &[u8]) -> Vec<i16> {
    bytes
        .chunks_exact(2)
        .map(|b| i16::from_le_bytes([b[0], b[1]]))
        .collect()
}

/// Samples to little-endian s16 bytes.
pub fn i16_to_s16le(samples: &[i16]) -> Vec<u8> {
    samples.iter().flat_map(|s| s.to_le_bytes()).collect()
}

/// Split interleaved stereo into (left, right).
pub fn deinterleave(stereo: &[i16]) -> (Vec<i16>, Vec<i16>) {
    stereo.chunks_exact(2).map(|f| (f[0], f[1])).unzip()
}

/// Stereo to mono as the mean of both channels (what the product's downmix does).
pub fn downmix(stereo: &[i16]) -> Vec<i16> {
    stereo
        .chunks_exact(2)
        .map(|f| ((i32::from(f[0]) + i32::from(f[1])) / 2) as i16)
        .collect()
}

/// Root-mean-square level (0 for empty input).
pub fn rms(samples: &[i16]) -> f64 {
    if samples.is_empty() {
        return 0.0;
    }
    let sum: f64 = samples.iter().map(|&s| f64::from(s) * f64::from(s)).sum();
    (sum / samples.len() as f64).sqrt()
}
