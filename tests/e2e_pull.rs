//! End to end: `whep-bridge testsrc` → `whep-bridge pull` → a WebSocket sink in the test.
//! Real processes and sockets on 127.0.0.1; every wait is bounded.
//!
//! The audio itself is checked: duration vs wall time, the two source tones in the mono
//! downmix, phase continuity (no gap, no duplicate) and the chunk size.

mod common;

use std::process::Command;
use std::time::Duration;

use common::audio::{decode_seed, decode_seed_by_stream, s16le_to_i16};
use common::net::free_port;
use common::process::{bin_path, ChildGuard};
use common::spectrum::dominant_frequencies;
use common::testsrc::start_testsrc;
use common::ws_sink::{WsMessage, WsSink};

const RATE: u32 = 16_000;
const CHUNK_SAMPLES: usize = 3_200; // 200 ms at 16 kHz mono
/// Audio skipped at the start before frequency/continuity checks (decoder warm-up).
const WARMUP: usize = RATE as usize / 2;

fn start_pull(name: &str, whep: &str, ws: &str, extra: &[&str]) -> ChildGuard {
    let mut cmd = Command::new(bin_path());
    cmd.args(["pull", "--whep", whep, "--ws", ws, "--rtc-ip", "127.0.0.1"])
        .args(extra);
    ChildGuard::spawn(name, &mut cmd).expect("spawn pull")
}

fn wait_success(pull: &mut ChildGuard, within: Duration) {
    match pull.wait_exit(within) {
        Some(status) => assert!(
            status.success(),
            "pull exited with {status}\n{}",
            pull.log_tail()
        ),
        None => panic!("pull did not exit in {within:?}\n{}", pull.log_tail()),
    }
}

/// Waits for `pull` to exit with a failure and returns its log.
fn wait_failure(pull: &mut ChildGuard, within: Duration) -> String {
    let status = pull
        .wait_exit(within)
        .unwrap_or_else(|| panic!("pull hung\n{}", pull.log_tail()));
    assert!(
        !status.success(),
        "pull should have failed\n{}",
        pull.log_tail()
    );
    pull.output()
}

/// Checks a mono 16 kHz recording of two tones: pacing, frequencies, continuity.
fn check_tones(label: &str, samples: &[i16], chunk_times: &[std::time::Instant], tones: [f64; 2]) {
    // Pacing: full chunks received vs the wall time between the first and the last one.
    let full = chunk_times.len();
    assert!(full >= 25, "{label}: only {full} chunks");
    let wall = chunk_times[full - 1]
        .duration_since(chunk_times[0])
        .as_secs_f64();
    let audio = (full - 1) as f64 * CHUNK_SAMPLES as f64 / RATE as f64;
    let ratio = audio / wall;
    assert!(
        (0.97..=1.03).contains(&ratio),
        "{label}: {audio:.3} s of audio over {wall:.3} s wall time (ratio {ratio:.4})"
    );

    let body = &samples[WARMUP..];
    let found = dominant_frequencies(body, RATE, 2);
    assert_eq!(found.len(), 2, "{label}: tones found {found:?}");
    for (f, want) in found.iter().zip(tones) {
        assert!(
            (f - want).abs() <= 2.0,
            "{label}: found {found:?}, want {tones:?}"
        );
    }
    let report = common::continuity::continuity_report(body, RATE, &tones);
    assert!(
        report.is_continuous(),
        "{label}: audio not continuous: {report:?}"
    );
}

/// Arrival times of the full-size text chunks.
fn full_chunk_times(msgs: &[WsMessage]) -> Vec<std::time::Instant> {
    let (_, metas) = decode_seed(msgs);
    metas
        .iter()
        .filter(|m| m.samples == CHUNK_SAMPLES)
        .map(|m| m.at)
        .collect()
}

#[test]
fn seed_pull_delivers_continuous_tones_at_real_time_pace() {
    let sink = WsSink::start();
    let (_src, base) = start_testsrc(&[]);
    let whep = format!("{base}/whep/seed?freq=437&freq_r=1013");
    let trace = "0af7651916cd43dd8448eb211c80319c";
    let mut pull = start_pull(
        "pull-seed",
        &whep,
        &sink.url("/asr"),
        &[
            "--stm-id",
            "room-1",
            "--trace-id",
            trace,
            "--duration",
            "7",
            "--ws-header",
            "Authorization: Bearer consumer-secret",
        ],
    );
    wait_success(&mut pull, Duration::from_secs(30));
    let conns = sink.connections();
    assert_eq!(conns.len(), 1);
    assert_eq!(
        conns[0].header("authorization"),
        Some("Bearer consumer-secret")
    );
    assert!(
        !pull.output().contains("consumer-secret"),
        "a handshake secret reached the logs"
    );

    let msgs: Vec<WsMessage> = sink.messages();
    let (samples, metas) = decode_seed(&msgs); // asserts exactly four fields per message
    assert!(metas
        .iter()
        .all(|m| m.stm_id == "room-1" && m.trace_id == trace));
    // Every chunk but a final partial one is exactly 200 ms = 6400 bytes.
    let (last, rest) = metas.split_last().expect("no audio received");
    assert!(
        rest.iter().all(|m| m.samples == CHUNK_SAMPLES),
        "chunk sizes"
    );
    assert!(last.samples <= CHUNK_SAMPLES && last.samples > 0);
    // Timestamps are send times: increasing, close to now.
    assert!(metas.windows(2).all(|w| w[1].timestamp >= w[0].timestamp));
    check_tones("seed", &samples, &full_chunk_times(&msgs), [437.0, 1013.0]);
    // The clean stop closed the WebSocket with a close frame.
    assert!(msgs.last().is_some_and(|m| m.is_close()), "no close frame");
}

#[test]
fn extended_envelope_has_continuous_seq_and_pts() {
    let sink = WsSink::start();
    let (_src, base) = start_testsrc(&[]);
    let whep = format!("{base}/rtc/v1/whep/?app=live&stream=ext&freq=523&freq_r=1297");
    let mut pull = start_pull(
        "pull-ext",
        &whep,
        &sink.url("/x/{stmId}"),
        &["--envelope", "extended", "--duration", "6"],
    );
    wait_success(&mut pull, Duration::from_secs(30));

    let conns = sink.connections();
    assert_eq!(
        conns[0].path, "/x/ext",
        "stmId template derived from the SRS URL"
    );
    let mut samples = Vec::new();
    let mut times = Vec::new();
    let mut seqs = Vec::new();
    for m in sink
        .messages()
        .iter()
        .filter_map(|m| m.text().map(|t| (m.at, t)))
    {
        let v: serde_json::Value = serde_json::from_str(m.1).expect("json");
        let obj = v.as_object().expect("object");
        let mut keys: Vec<&str> = obj.keys().map(String::as_str).collect();
        keys.sort_unstable();
        assert_eq!(
            keys,
            [
                "channels",
                "data",
                "epoch",
                "node",
                "pts",
                "sampleRate",
                "seq",
                "stmId",
                "timestamp",
                "traceId"
            ]
        );
        assert_eq!(obj["sampleRate"], 16000);
        assert_eq!(obj["channels"], 1);
        let seq = obj["seq"].as_u64().expect("seq");
        assert_eq!(obj["pts"].as_u64(), Some(seq * 200), "pts of chunk {seq}");
        use base64::Engine as _;
        let pcm = base64::engine::general_purpose::STANDARD
            .decode(obj["data"].as_str().expect("data"))
            .expect("base64");
        if pcm.len() == CHUNK_SAMPLES * 2 {
            times.push(m.0);
        }
        samples.extend(s16le_to_i16(&pcm));
        seqs.push(seq);
    }
    let expected: Vec<u64> = (0..seqs.len() as u64).collect();
    assert_eq!(seqs, expected, "seq must start at 0 and increase by 1");
    check_tones("extended", &samples, &times, [523.0, 1297.0]);
}

#[test]
fn binary_envelope_sends_start_pcm_stop() {
    let sink = WsSink::start();
    let (_src, base) = start_testsrc(&[]);
    let whep = format!("{base}/whep/bin?freq=389&freq_r=877");
    let mut pull = start_pull(
        "pull-bin",
        &whep,
        &sink.url("/bin"),
        &["--envelope", "binary", "--stm-id", "b1", "--duration", "6"],
    );
    wait_success(&mut pull, Duration::from_secs(30));

    let msgs = sink.messages();
    let start: serde_json::Value =
        serde_json::from_str(msgs[0].text().expect("first frame is text")).expect("start json");
    assert_eq!(start["event"], "start");
    assert_eq!(start["stmId"], "b1");
    assert_eq!(start["format"], "s16le");
    assert_eq!(start["sampleRate"], 16000);
    assert_eq!(start["channels"], 1);
    assert_eq!(start["seq"], 0);
    let binaries: Vec<&WsMessage> = msgs.iter().filter(|m| m.binary().is_some()).collect();
    let mut samples = Vec::new();
    let mut times = Vec::new();
    for (i, m) in binaries.iter().enumerate() {
        let b = m.binary().unwrap_or_default();
        if i + 1 < binaries.len() {
            assert_eq!(b.len(), CHUNK_SAMPLES * 2, "binary chunk {i} size");
        }
        if b.len() == CHUNK_SAMPLES * 2 {
            times.push(m.at);
        }
        samples.extend(s16le_to_i16(b));
    }
    let stop_idx = msgs
        .iter()
        .rposition(|m| m.text().is_some())
        .expect("stop frame");
    let stop: serde_json::Value =
        serde_json::from_str(msgs[stop_idx].text().unwrap_or_default()).expect("stop json");
    assert_eq!(stop["event"], "stop");
    assert!(stop_idx > 0 && msgs[1..stop_idx].iter().all(|m| m.binary().is_some()));
    check_tones("binary", &samples, &times, [389.0, 877.0]);
}

#[test]
fn resampled_44k_stereo_keeps_both_channels_and_the_pace() {
    // 44.1 kHz is not a native Opus rate: decode at 48 kHz stereo, rubato to 44.1 kHz.
    let sink = WsSink::start();
    let (_src, base) = start_testsrc(&[]);
    let whep = format!("{base}/whep/hifi?freq=431&freq_r=1117");
    let mut pull = start_pull(
        "pull-44k",
        &whep,
        &sink.url("/hifi"),
        &[
            "--sample-rate",
            "44100",
            "--channels",
            "2",
            "--chunk-ms",
            "100",
            "--duration",
            "6",
        ],
    );
    wait_success(&mut pull, Duration::from_secs(30));
    let msgs = sink.messages();
    let (pcm, metas) = decode_seed(&msgs);
    let chunk = 4_410 * 2; // 100 ms of 44.1 kHz stereo, interleaved samples
    let full: Vec<_> = metas.iter().filter(|m| m.samples == chunk).collect();
    assert!(full.len() >= 45, "{} full chunks", full.len());
    let wall = full[full.len() - 1]
        .at
        .duration_since(full[0].at)
        .as_secs_f64();
    let ratio = (full.len() - 1) as f64 * 0.1 / wall;
    assert!((0.97..=1.03).contains(&ratio), "pace ratio {ratio:.4}");
    let (left, right) = common::audio::deinterleave(&pcm[44_100..]);
    let fl = dominant_frequencies(&left, 44_100, 1);
    let fr = dominant_frequencies(&right, 44_100, 1);
    assert!((fl[0] - 431.0).abs() <= 2.0, "left {fl:?}");
    assert!((fr[0] - 1117.0).abs() <= 2.0, "right {fr:?}");
    let report = common::continuity::continuity_report(&left, 44_100, &[431.0]);
    assert!(report.is_continuous(), "left channel: {report}");
}

#[test]
fn three_concurrent_pulls_each_get_their_own_stream() {
    let sink = WsSink::start();
    let (_src, base) = start_testsrc(&[]);
    let tones = [[440.0, 660.0], [353.0, 1181.0], [607.0, 947.0]];
    let mut pulls: Vec<ChildGuard> = tones
        .iter()
        .enumerate()
        .map(|(i, [l, r])| {
            let whep = format!("{base}/whep/s{i}?freq={l}&freq_r={r}");
            start_pull(
                &format!("pull-{i}"),
                &whep,
                &sink.url("/multi"),
                &["--stm-id", &format!("s{i}"), "--duration", "7"],
            )
        })
        .collect();
    for p in &mut pulls {
        wait_success(p, Duration::from_secs(40));
    }
    let msgs = sink.messages();
    let by_stream = decode_seed_by_stream(&msgs);
    assert_eq!(by_stream.len(), 3, "streams: {:?}", by_stream.keys());
    for (i, t) in tones.iter().enumerate() {
        let (samples, metas) = &by_stream[&format!("s{i}")];
        let times: Vec<_> = metas
            .iter()
            .filter(|m| m.samples == CHUNK_SAMPLES)
            .map(|m| m.at)
            .collect();
        check_tones(&format!("s{i}"), samples, &times, *t);
    }
}

#[test]
fn consumer_refusing_connection_fails_clearly() {
    let (_src, base) = start_testsrc(&[]);
    let dead = format!("ws://127.0.0.1:{}/nobody", free_port());
    let mut pull = start_pull(
        "pull-noconsumer",
        &format!("{base}/whep/x"),
        &dead,
        &["--duration", "20"],
    );
    let log = wait_failure(&mut pull, Duration::from_secs(20));
    assert!(log.contains("WebSocket connect"), "unclear error:\n{log}");
}

#[test]
fn unknown_whep_stream_fails_with_the_status() {
    let sink = WsSink::start();
    let (_src, base) = start_testsrc(&[]);
    let mut pull = start_pull(
        "pull-404",
        &format!("{base}/nope/what"),
        &sink.url("/"),
        &["--duration", "20"],
    );
    let log = wait_failure(&mut pull, Duration::from_secs(20));
    assert!(log.contains("404"), "unclear error:\n{log}");
}

#[test]
fn srs_style_error_as_closed_connection_is_reported_after_retries() {
    // SRS answers errors by closing the connection without any HTTP response.
    let sink = WsSink::start();
    let (_src, base) = start_testsrc(&["--srs-errors", "--streams", "known"]);
    let started = std::time::Instant::now();
    let mut pull = start_pull(
        "pull-srs-error",
        &format!("{base}/rtc/v1/whep/?app=live&stream=unknown"),
        &sink.url("/"),
        &["--max-failures", "2", "--duration", "30"],
    );
    let log = wait_failure(&mut pull, Duration::from_secs(30));
    assert!(
        log.contains("without an HTTP response") && log.contains("2 consecutive failures"),
        "unclear error:\n{log}"
    );
    assert!(log.contains("state=reconnecting"), "no retry:\n{log}");
    assert!(started.elapsed() < Duration::from_secs(20));
}

#[test]
fn sigterm_stops_cleanly_with_delete_and_close() {
    let sink = WsSink::start();
    let (_src, base) = start_testsrc(&[]);
    let stats_url = format!("{base}/stats");
    let mut pull = start_pull("pull-term", &format!("{base}/whep/t"), &sink.url("/t"), &[]);
    assert!(
        sink.wait_until(Duration::from_secs(15), |m| m.len() >= 5),
        "no audio\n{}",
        pull.log_tail()
    );
    let live: serde_json::Value = serde_json::from_str(
        &common::net::http_get(&stats_url, Duration::from_secs(5))
            .expect("stats")
            .body_text(),
    )
    .expect("stats json");
    assert_eq!(live["sessions"].as_array().map(Vec::len), Some(1));

    let asked = std::time::Instant::now();
    let status = pull
        .terminate(Duration::from_secs(10))
        .unwrap_or_else(|| panic!("pull ignored SIGTERM\n{}", pull.log_tail()));
    assert!(status.success(), "exit {status}\n{}", pull.log_tail());
    // DELETE and the close handshake are quick on loopback: no timeout was needed.
    assert!(
        asked.elapsed() < Duration::from_millis(1500),
        "stop took {:?}\n{}",
        asked.elapsed(),
        pull.log_tail()
    );
    // WHEP DELETE reached the source: its session is gone.
    let after: serde_json::Value = serde_json::from_str(
        &common::net::http_get(&stats_url, Duration::from_secs(5))
            .expect("stats")
            .body_text(),
    )
    .expect("stats json");
    assert_eq!(
        after["sessions"].as_array().map(Vec::len),
        Some(0),
        "{after}"
    );
    // The WebSocket got a close frame.
    assert!(sink.messages().iter().any(|m| m.is_close()));
}
