//! What a consumer received, per stream: the plain core of `whep-bridge sink`.
//!
//! Understands all three envelopes (SPEC §4.1) so an operator can point a stream at the sink
//! and see whether audio arrives at the expected pace, whatever the format.
//!
//! With `extended` (and `binary`, whose start frame names them) every chunk says which
//! `node` sent it under which lease `epoch`, so the tally also tells how a cluster failover
//! looked from the consumer's side: how often the owner changed, how long the audio stopped
//! at each change (the takeover gap), the longest silence overall, and whether an old owner
//! kept sending after a new one had started (stale chunks: double delivery).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::{json, Value};

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
    /// Node and epoch of the latest chunk of the highest epoch seen (`extended` or `binary`):
    /// who delivers the stream now. `None` with the `seed` envelope, which names neither.
    pub node: Option<String>,
    pub epoch: Option<u64>,
    /// Times the epoch grew: each one is a new run of the stream (a takeover after a node
    /// died, a hand-over on drain, or a restart after a spec change).
    pub owner_changes: u64,
    /// Chunks whose epoch is lower than the highest already seen: an old owner still sending
    /// after a new one started, i.e. double delivery. Counted in `chunks` too.
    pub stale_chunks: u64,
    /// Longest wall-clock time between two consecutive chunk arrivals.
    pub max_gap: Duration,
    /// At each epoch change, the time from the previous chunk to the first chunk of the new
    /// epoch: the audio gap the consumer saw during that takeover.
    pub takeover_gaps: Vec<Duration>,
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

    /// Records one chunk's arrival: gap since the previous chunk and, when the chunk names
    /// its owner, epoch bookkeeping. Called before `last_at` moves to `now`.
    fn arrival(&mut self, owner: Option<(&str, u64)>, now: Instant) {
        let gap = self.last_at.map(|last| now.saturating_duration_since(last));
        if let Some(gap) = gap {
            self.max_gap = self.max_gap.max(gap);
        }
        let Some((node, epoch)) = owner else { return };
        match self.epoch {
            Some(current) if epoch < current => self.stale_chunks += 1,
            Some(current) if epoch == current => self.node = Some(node.to_owned()),
            previous => {
                if previous.is_some() {
                    self.owner_changes += 1;
                    self.takeover_gaps.extend(gap);
                }
                self.epoch = Some(epoch);
                self.node = Some(node.to_owned());
            }
        }
    }

    /// This stream's entry of the `--report-json` file (times in whole milliseconds;
    /// `lastChunkAgoMs` tells a script whether the stream is delivering right now).
    pub fn report_json(&self, now: Instant) -> Value {
        let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        json!({
            "chunks": self.chunks,
            "seconds": self.seconds,
            "seqGaps": self.seq_gaps,
            "pace": self.pace(),
            "node": self.node,
            "epoch": self.epoch,
            "ownerChanges": self.owner_changes,
            "staleChunks": self.stale_chunks,
            "maxGapMs": ms(self.max_gap),
            "takeoverGapsMs": self.takeover_gaps.iter().map(|d| ms(*d)).collect::<Vec<_>>(),
            "lastChunkAgoMs": self.last_at.map(|last| ms(now.saturating_duration_since(last))),
        })
    }

    /// The takeover gaps in milliseconds, for log lines.
    pub fn takeover_gaps_ms(&self) -> Vec<u128> {
        self.takeover_gaps.iter().map(Duration::as_millis).collect()
    }
}

/// Per-connection parsing state (binary mode: the start frame names the stream).
#[derive(Debug, Default)]
pub struct ConnectionState {
    binary_stream: Option<String>,
    /// `node` and `epoch` of the binary start frame: the owner of the frames that follow.
    binary_owner: Option<(String, u64)>,
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

/// `node` and `epoch` of an `extended` chunk or a binary start frame; `None` for `seed`.
fn owner_of(v: &Value) -> Option<(&str, u64)> {
    let epoch = v.get("epoch").and_then(Value::as_u64)?;
    let node = v.get("node").and_then(Value::as_str).unwrap_or_default();
    Some((node, epoch))
}

impl Tally {
    /// One chunk of `stm_id`; `owner` is its (`node`, `epoch`) when the envelope names them.
    fn add_audio(
        &mut self,
        stm_id: &str,
        bytes: usize,
        (rate, channels): (u32, u16),
        owner: Option<(&str, u64)>,
        now: Instant,
    ) {
        let t = self.streams.entry(stm_id.to_owned()).or_default();
        t.arrival(owner, now);
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
                conn.binary_owner = owner_of(&v).map(|(n, e)| (n.to_owned(), e));
            }
            (Some("stop"), _) => {
                conn.binary_stream = None;
                conn.binary_owner = None;
            }
            (None, Some(id)) => {
                let data = v.get("data").and_then(Value::as_str).unwrap_or_default();
                let Ok(pcm) = base64::engine::general_purpose::STANDARD.decode(data) else {
                    self.malformed += 1;
                    return;
                };
                self.add_audio(&id, pcm.len(), fmt_of(&v), owner_of(&v), now);
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
                let format = self
                    .streams
                    .get(&id)
                    .map(|t| (t.sample_rate, t.channels))
                    .unwrap_or((16_000, 1));
                let owner = conn.binary_owner.as_ref().map(|(n, e)| (n.as_str(), *e));
                self.add_audio(&id, len, format, owner, now);
            }
            None => self.malformed += 1,
        }
    }

    /// The `--report-json` document: one entry per stream, keyed by `stmId`.
    pub fn report_json(&self, now: Instant) -> Value {
        Value::Object(
            self.streams
                .iter()
                .map(|(id, t)| (id.clone(), t.report_json(now)))
                .collect(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b64(n: usize) -> String {
        base64::engine::general_purpose::STANDARD.encode(vec![0u8; n])
    }

    /// A 200 ms `extended` chunk (16 kHz mono) of stream `a`.
    fn extended(seq: u64, node: &str, epoch: u64) -> String {
        format!(
            r#"{{"traceId":"t","stmId":"a","timestamp":1.5,"data":"{}","seq":{seq},"pts":0,"sampleRate":16000,"channels":1,"epoch":{epoch},"node":"{node}"}}"#,
            b64(6400)
        )
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn epoch_changes_record_owner_takeover_gap_and_stale_chunks() {
        let mut t = Tally::default();
        let mut c = ConnectionState::default();
        let t0 = Instant::now();
        // n1 delivers at real-time pace under epoch 1.
        for (i, at) in [0, 200, 400].into_iter().enumerate() {
            t.text(&mut c, &extended(i as u64, "n1", 1), t0 + ms(at));
        }
        let a = &t.streams["a"];
        assert_eq!((a.node.as_deref(), a.epoch), (Some("n1"), Some(1)));
        assert_eq!(a.owner_changes, 0, "the first epoch is not a change");
        assert_eq!(a.max_gap, ms(200));
        assert!(a.takeover_gaps.is_empty());

        // n1 dies; n2 takes over 3 s after n1's last chunk.
        t.text(&mut c, &extended(0, "n2", 2), t0 + ms(3_400));
        t.text(&mut c, &extended(1, "n2", 2), t0 + ms(3_600));
        // A late chunk from the old owner: counted as stale, the owner stays n2.
        t.text(&mut c, &extended(3, "n1", 1), t0 + ms(3_700));
        // A drain hand-over to n3: 210 ms gap after the stale chunk.
        t.text(&mut c, &extended(0, "n3", 3), t0 + ms(3_910));
        let a = &t.streams["a"];
        assert_eq!((a.node.as_deref(), a.epoch), (Some("n3"), Some(3)));
        assert_eq!(a.owner_changes, 2);
        assert_eq!(a.takeover_gaps, vec![ms(3_000), ms(210)]);
        assert_eq!(a.takeover_gaps_ms(), vec![3_000, 210]);
        assert_eq!(a.max_gap, ms(3_000));
        assert_eq!(a.stale_chunks, 1);
        assert_eq!(a.chunks, 7, "stale chunks still count as received");
    }

    #[test]
    fn seed_chunks_track_gaps_but_no_owner() {
        let mut t = Tally::default();
        let mut c = ConnectionState::default();
        let msg = format!(
            r#"{{"traceId":"t","stmId":"a","timestamp":1.5,"data":"{}"}}"#,
            b64(6400)
        );
        let t0 = Instant::now();
        for at in [0, 200, 1_450, 1_650] {
            t.text(&mut c, &msg, t0 + ms(at));
        }
        let a = &t.streams["a"];
        assert_eq!(a.max_gap, ms(1_250));
        assert_eq!(
            (a.node.as_deref(), a.epoch, a.owner_changes),
            (None, None, 0)
        );
        assert!(a.takeover_gaps.is_empty());
    }

    #[test]
    fn binary_start_frames_name_the_owner_of_the_frames_that_follow() {
        let mut t = Tally::default();
        let start = |node: &str, epoch: u64| {
            format!(
                r#"{{"event":"start","stmId":"b","traceId":"t","sampleRate":16000,"channels":1,"format":"s16le","epoch":{epoch},"node":"{node}","seq":0}}"#
            )
        };
        let t0 = Instant::now();
        let mut old = ConnectionState::default();
        t.text(&mut old, &start("n1", 4), t0);
        t.binary(&old, 6400, t0 + ms(100));
        t.binary(&old, 6400, t0 + ms(300));
        // The new owner's start frame alone is not audio: the gap ends at its first frame.
        let mut new = ConnectionState::default();
        t.text(&mut new, &start("n2", 5), t0 + ms(500));
        t.binary(&new, 6400, t0 + ms(800));
        t.binary(&old, 6400, t0 + ms(900));
        let b = &t.streams["b"];
        assert_eq!((b.node.as_deref(), b.epoch), (Some("n2"), Some(5)));
        assert_eq!(b.takeover_gaps, vec![ms(500)]);
        assert_eq!(b.stale_chunks, 1);
        assert_eq!(b.max_gap, ms(500));
    }

    #[test]
    fn report_json_has_one_entry_per_stream_in_milliseconds() {
        let mut t = Tally::default();
        let mut c = ConnectionState::default();
        let t0 = Instant::now();
        t.text(&mut c, &extended(0, "n1", 1), t0);
        t.text(&mut c, &extended(1, "n1", 1), t0 + ms(200));
        t.text(&mut c, &extended(0, "n2", 2), t0 + ms(3_250));
        let doc = t.report_json(t0 + ms(3_300));
        let a = &doc["a"];
        assert_eq!(a["chunks"], 3);
        assert_eq!(a["node"], "n2");
        assert_eq!(a["epoch"], 2);
        assert_eq!(a["ownerChanges"], 1);
        assert_eq!(a["staleChunks"], 0);
        assert_eq!(a["maxGapMs"], 3_050);
        assert_eq!(a["takeoverGapsMs"], json!([3_050]));
        assert_eq!(a["lastChunkAgoMs"], 50);
        assert!((a["seconds"].as_f64().unwrap() - 0.6).abs() < 1e-9);
        assert_eq!(doc.as_object().map(|o| o.len()), Some(1));
        assert_eq!(Tally::default().report_json(t0), json!({}));
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
