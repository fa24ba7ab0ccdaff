//! End to end, SPEC §4.3 "no data lost on consumer outages": `whep-bridge testsrc` →
//! `whep-bridge pull` → a WebSocket sink in the test that crashes (every connection dropped
//! without a close frame) and then refuses connections for 5 s, while the source keeps
//! playing. Real processes and sockets on 127.0.0.1; every wait is bounded.
//!
//! Afterwards the audio the sink received over all its connections must be exactly the
//! source's audio: for `extended`, `seq` is 0..n with no gap and no duplicate; for `binary`,
//! every connection starts with a start frame naming the next `seq`; in every case the PCM in
//! order is phase-continuous (not one sample lost or repeated) and its duration matches the
//! wall time of the stream, so the 5 s outage cost nothing. The backlog must also arrive as
//! one burst right after the reconnect, then the stream continues live.

mod common;

use std::collections::BTreeMap;
use std::process::Command;
use std::time::{Duration, Instant};

use base64::Engine as _;
use common::audio::{decode_seed, s16le_to_i16};
use common::process::{bin_path, ChildGuard};
use common::spectrum::dominant_frequencies;
use common::testsrc::start_testsrc;
use common::ws_sink::{WsConnection, WsMessage, WsSink};

const RATE: u32 = 16_000;
const CHUNK_SAMPLES: usize = 3_200; // 200 ms at 16 kHz mono
const CHUNK_SECS: f64 = 0.2;
/// Audio skipped at the start before frequency/continuity checks (decoder warm-up).
const WARMUP: usize = RATE as usize / 2;
/// How long the consumer refuses connections after crashing.
const OUTAGE: Duration = Duration::from_secs(5);
/// Chunks the sink must have received before it crashes (~4 s of audio).
const CHUNKS_BEFORE_CRASH: usize = 20;

/// What one outage drill produced.
struct Drill {
    messages: Vec<WsMessage>,
    connections: Vec<WsConnection>,
    refused: usize,
    /// When the sink dropped every connection.
    crash: Instant,
    log: String,
}

/// Runs `pull` with `envelope` for 18 s and crashes the sink once ~4 s of audio arrived:
/// every connection is dropped and new ones are refused for [`OUTAGE`].
///
/// The refusal is armed just before the connections are dropped, so that the forwarder's
/// first reconnect (after a random delay of up to 0.5 s) cannot slip in between.
/// `--max-failures 10`: pull's budget of consecutive failed connects (default 5) is
/// shared with WHEP; with a 0.5 s backoff base, 5 jittered attempts span 3.75–7.5 s, which
/// a 5 s refusal could exhaust. 10 attempts span well over a minute.
fn outage_drill(name: &str, envelope: &str, tones: [u32; 2]) -> Drill {
    let sink = WsSink::start();
    let (_src, base) = start_testsrc(&[]);
    let whep = format!("{base}/whep/{name}?freq={}&freq_r={}", tones[0], tones[1]);
    let mut pull = ChildGuard::spawn(
        name,
        Command::new(bin_path()).args([
            "pull",
            "--whep",
            &whep,
            "--ws",
            &sink.url("/asr/{stmId}"),
            "--rtc-ip",
            "127.0.0.1",
            "--envelope",
            envelope,
            "--duration",
            "18",
            "--max-failures",
            "10",
        ]),
    )
    .expect("spawn pull");
    let audio_msgs = |m: &[WsMessage]| {
        m.iter()
            .filter(|m| m.binary().is_some() || m.text().is_some_and(|t| t.contains("\"data\"")))
            .count()
    };
    assert!(
        sink.wait_until(Duration::from_secs(20), |m| audio_msgs(m)
            >= CHUNKS_BEFORE_CRASH),
        "no audio before the crash\n{}",
        pull.log_tail()
    );
    sink.refuse_for(OUTAGE);
    sink.close_all();
    let crash = Instant::now();

    let status = pull
        .wait_exit(Duration::from_secs(40))
        .unwrap_or_else(|| panic!("pull did not exit\n{}", pull.log_tail()));
    assert!(
        status.success(),
        "pull exited with {status}\n{}",
        pull.log_tail()
    );
    let drill = Drill {
        messages: sink.messages(),
        connections: sink.connections(),
        refused: sink.refused_count(),
        crash,
        log: pull.output(),
    };
    drill.check_reconnected();
    drill
}

impl Drill {
    /// The outage really happened and the forwarder came back after it.
    fn check_reconnected(&self) {
        assert!(
            self.connections.len() >= 2,
            "only {} connection(s)\n{}",
            self.connections.len(),
            self.log
        );
        assert!(self.refused >= 1, "no reconnect attempt hit the refusal");
        let back = self.connections[1].opened.duration_since(self.crash);
        assert!(
            back >= OUTAGE - Duration::from_millis(100),
            "reconnected {back:?} after the crash, during the refusal"
        );
        for needle in [
            "consumer disconnected",
            "consumer connect failed; retrying",
            "consumer connected again",
            "consumer back; replaying",
        ] {
            assert!(
                self.log.contains(needle),
                "log lacks {needle:?}:\n{}",
                self.log
            );
        }
        // The stream ended with a close handshake on the last connection.
        assert!(self.messages.last().is_some_and(|m| m.is_close()));
    }

    /// Connection index and arrival of the audio messages, in arrival order.
    fn audio_arrivals(&self) -> Vec<(usize, Instant)> {
        self.messages
            .iter()
            .filter(|m| m.binary().is_some() || m.text().is_some_and(|t| t.contains("\"data\"")))
            .map(|m| (m.conn, m.at))
            .collect()
    }

    /// The backlog came as one burst at the start of the first reconnection: every chunk
    /// produced during the outage arrived within 0.5 s of that connection's first one.
    fn check_burst(&self) {
        let arrivals = self.audio_arrivals();
        let on_first_reconnect: Vec<Instant> = arrivals
            .iter()
            .filter(|(c, _)| *c == 1)
            .map(|(_, at)| *at)
            .collect();
        let first = *on_first_reconnect
            .first()
            .expect("no audio on the reconnection");
        let burst = on_first_reconnect
            .iter()
            .filter(|at| at.duration_since(first) < Duration::from_millis(500))
            .count();
        // Audio produced while away: from the crash to the reconnect (minus one chunk in
        // production and one of slack).
        let away = self.connections[1]
            .opened
            .duration_since(self.crash)
            .as_secs_f64();
        let expected = (away / CHUNK_SECS) as usize - 2;
        assert!(
            burst >= expected && burst >= 20,
            "only {burst} chunks in the replay burst, expected ≥ {expected} ({away:.2} s away)"
        );
        // Then live pace again: the last 10 chunks took about 2 s.
        let tail = &on_first_reconnect[on_first_reconnect.len().saturating_sub(11)..];
        if tail.len() == 11 && tail[0].duration_since(first) > Duration::from_secs(1) {
            let span = tail[10].duration_since(tail[0]).as_secs_f64();
            assert!(
                (1.7..=2.3).contains(&span),
                "10 live chunks took {span:.2} s"
            );
        }
    }
}

/// Pacing (audio duration vs wall time), the two tones and sample-exact continuity of a
/// recording whose full chunks arrived at `full_chunk_times` (first and last live).
fn check_audio(label: &str, samples: &[i16], full_chunk_times: &[Instant], tones: [u32; 2]) {
    let n = full_chunk_times.len();
    assert!(n >= 60, "{label}: only {n} full chunks");
    let wall = full_chunk_times[n - 1]
        .duration_since(full_chunk_times[0])
        .as_secs_f64();
    let audio = (n - 1) as f64 * CHUNK_SECS;
    let ratio = audio / wall;
    assert!(
        (0.97..=1.03).contains(&ratio),
        "{label}: {audio:.3} s of audio over {wall:.3} s of streaming (ratio {ratio:.4}): \
         audio was lost or duplicated"
    );
    let body = &samples[WARMUP..];
    let want = tones.map(f64::from);
    let found = dominant_frequencies(body, RATE, 2);
    assert_eq!(found.len(), 2, "{label}: tones found {found:?}");
    for (f, w) in found.iter().zip(want) {
        assert!(
            (f - w).abs() <= 2.0,
            "{label}: found {found:?}, want {want:?}"
        );
    }
    let report = common::continuity::continuity_report(body, RATE, &want);
    assert!(
        report.is_continuous(),
        "{label}: audio not continuous across the outage: {report}"
    );
    eprintln!(
        "{label}: {:.3} s of audio over {wall:.3} s of streaming (ratio {ratio:.4}), continuous",
        samples.len() as f64 / f64::from(RATE)
    );
}

#[test]
fn extended_outage_replays_every_chunk_once_in_order() {
    let tones = [437, 1013];
    let drill = outage_drill("outage-ext", "extended", tones);

    // seq → (connection, arrival, pcm); a duplicate seq is a failure.
    let mut by_seq: BTreeMap<u64, (usize, Instant, Vec<i16>)> = BTreeMap::new();
    let mut last_seq_of_conn: BTreeMap<usize, u64> = BTreeMap::new();
    for m in &drill.messages {
        let Some(text) = m.text() else { continue };
        let v: serde_json::Value = serde_json::from_str(text).expect("json");
        let seq = v["seq"].as_u64().expect("seq");
        assert_eq!(v["pts"].as_u64(), Some(seq * 200), "pts of chunk {seq}");
        if let Some(prev) = last_seq_of_conn.insert(m.conn, seq) {
            assert!(seq > prev, "seq went back on connection {}", m.conn);
        }
        let pcm = base64::engine::general_purpose::STANDARD
            .decode(v["data"].as_str().expect("data"))
            .expect("base64");
        let old = by_seq.insert(seq, (m.conn, m.at, s16le_to_i16(&pcm)));
        assert!(old.is_none(), "chunk {seq} arrived twice");
    }
    let n = by_seq.len() as u64;
    assert_eq!(
        by_seq.keys().copied().collect::<Vec<_>>(),
        (0..n).collect::<Vec<_>>(),
        "seq must be exactly 0..{n} over all connections"
    );
    // Connections took over in order: each one's first seq follows the previous one's last.
    let conns: Vec<usize> = last_seq_of_conn.keys().copied().collect();
    assert!(conns.len() >= 2, "audio on {} connection(s)", conns.len());
    for pair in by_seq.values().collect::<Vec<_>>().windows(2) {
        assert!(
            pair[1].0 >= pair[0].0,
            "a later seq came on an earlier connection"
        );
    }

    let samples: Vec<i16> = by_seq
        .values()
        .flat_map(|(_, _, pcm)| pcm.clone())
        .collect();
    let full_times: Vec<Instant> = by_seq
        .values()
        .filter(|(_, _, pcm)| pcm.len() == CHUNK_SAMPLES)
        .map(|(_, at, _)| *at)
        .collect();
    check_audio("extended", &samples, &full_times, tones);
    drill.check_burst();
    eprintln!(
        "extended: {n} chunks over {} connections, {} refused connects, 0 lost",
        drill.connections.len(),
        drill.refused
    );
}

#[test]
fn seed_outage_loses_no_audio() {
    let tones = [523, 1297];
    let drill = outage_drill("outage-seed", "seed", tones);
    // Seed has no seq: the order of arrival is the order of the audio.
    let (samples, metas) = decode_seed(&drill.messages);
    let (last, rest) = metas.split_last().expect("no audio");
    assert!(
        rest.iter().all(|m| m.samples == CHUNK_SAMPLES),
        "only the final chunk may be short"
    );
    assert!(last.samples <= CHUNK_SAMPLES);
    let full_times: Vec<Instant> = metas
        .iter()
        .filter(|m| m.samples == CHUNK_SAMPLES)
        .map(|m| m.at)
        .collect();
    check_audio("seed", &samples, &full_times, tones);
    drill.check_burst();
}

#[test]
fn binary_outage_restarts_each_connection_with_the_next_seq() {
    let tones = [389, 877];
    let drill = outage_drill("outage-bin", "binary", tones);
    let mut samples = Vec::new();
    let mut full_times = Vec::new();
    let mut chunks_so_far = 0u64;
    for conn in 0..drill.connections.len() {
        let msgs: Vec<&WsMessage> = drill.messages.iter().filter(|m| m.conn == conn).collect();
        let Some(first) = msgs.first() else { continue };
        let start: serde_json::Value =
            serde_json::from_str(first.text().expect("a connection starts with a text frame"))
                .expect("start json");
        assert_eq!(start["event"], "start", "connection {conn}");
        assert_eq!(
            start["seq"].as_u64(),
            Some(chunks_so_far),
            "connection {conn} must announce the seq of its first chunk"
        );
        for m in &msgs[1..] {
            if let Some(b) = m.binary() {
                if b.len() == CHUNK_SAMPLES * 2 {
                    full_times.push(m.at);
                }
                samples.extend(s16le_to_i16(b));
                chunks_so_far += 1;
            }
        }
    }
    let stop = drill
        .messages
        .iter()
        .rev()
        .find_map(|m| m.text())
        .expect("stop frame");
    assert!(stop.contains("\"stop\""), "last text frame: {stop}");
    check_audio("binary", &samples, &full_times, tones);
    drill.check_burst();
}
