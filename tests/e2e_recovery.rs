//! Recovery of `whep-bridge pull` from WHEP-side trouble, driven by testsrc's SRS-like
//! misbehaviour: a peer that vanishes without a signal, a publisher that goes silent, and a
//! lossy, reordering network. Real processes on 127.0.0.1; every wait is bounded.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::audio::decode_seed;
use common::process::{bin_path, ChildGuard};
use common::spectrum::dominant_frequencies;
use common::testsrc::start_testsrc;
use common::ws_sink::WsSink;

const RATE: f64 = 16_000.0;

/// Runs `pull` for `secs` with short media timeouts and returns its log.
fn pull_for(whep: &str, sink: &WsSink, secs: u32) -> String {
    let mut pull = ChildGuard::spawn(
        "pull",
        Command::new(bin_path()).args([
            "pull",
            "--whep",
            whep,
            "--ws",
            &sink.url("/r"),
            "--rtc-ip",
            "127.0.0.1",
            "--stall-after",
            "1",
            "--media-timeout",
            "3",
            "--duration",
            &secs.to_string(),
        ]),
    )
    .expect("spawn pull");
    let status = pull
        .wait_exit(Duration::from_secs(u64::from(secs) + 20))
        .unwrap_or_else(|| panic!("pull hung\n{}", pull.log_tail()));
    assert!(
        status.success(),
        "pull failed: {status}\n{}",
        pull.log_tail()
    );
    pull.output()
}

/// Index of the first log line containing all `needles`, searching from `from`.
fn line_with(log: &str, from: usize, needles: &[&str]) -> Option<usize> {
    log.lines()
        .enumerate()
        .skip(from)
        .find(|(_, l)| needles.iter().all(|n| l.contains(n)))
        .map(|(i, _)| i)
}

/// Audio seconds that arrived at the sink after `t`.
fn audio_after(sink: &WsSink, t: Instant) -> f64 {
    let (_, metas) = decode_seed(&sink.messages());
    metas
        .iter()
        .filter(|m| m.at > t)
        .map(|m| m.samples as f64 / RATE)
        .sum()
}

#[test]
fn vanished_peer_is_reconnected_and_audio_resumes() {
    let sink = WsSink::start();
    let (_src, base) = start_testsrc(&[]);
    let started = Instant::now();
    // The source drops its session after 2 s without any signal (no BYE, no DELETE).
    let log = pull_for(&format!("{base}/whep/drop?drop_after=2"), &sink, 11);

    let stalled = line_with(&log, 0, &["state=stalled"]).expect("stalled state logged");
    let reconnecting =
        line_with(&log, stalled, &["state=reconnecting"]).expect("reconnecting logged");
    line_with(&log, reconnecting, &["state=live"]).expect("live again after reconnecting");
    assert!(
        log.contains("whep_connects=2") || log.contains("whep_connects=3"),
        "{log}"
    );
    // Audio flows again after the reconnect (≈ 2 s + 3 s media timeout after start). Every
    // new session is dropped after 2 s again, so expect about one session's worth.
    let resumed = audio_after(&sink, started + Duration::from_secs(5));
    assert!(
        resumed >= 1.0,
        "only {resumed:.2} s of audio after the reconnect\n{log}"
    );
    let (samples, metas) = decode_seed(&sink.messages());
    let first_late = metas
        .iter()
        .find(|m| m.at > started + Duration::from_secs(5))
        .expect("audio after the reconnect");
    let late = &samples[first_late.offset..(first_late.offset + 16_000).min(samples.len())];
    let f = dominant_frequencies(late, 16_000, 2);
    assert!(
        (f[0] - 440.0).abs() <= 2.0 && (f[1] - 660.0).abs() <= 2.0,
        "{f:?}"
    );
}

#[test]
fn silent_publisher_is_stalled_then_reconnected() {
    let sink = WsSink::start();
    let (_src, base) = start_testsrc(&[]);
    let started = Instant::now();
    // SRS behaviour when the publisher leaves: RTP stops, the session stays up.
    let log = pull_for(&format!("{base}/whep/quiet?silence_after=2"), &sink, 10);

    let stalled = line_with(&log, 0, &["state=stalled"]).expect("stalled state logged");
    let timeout = line_with(&log, stalled, &["no RTP for 3 s"]).expect("media timeout logged");
    line_with(&log, timeout, &["state=live"]).expect("live again on the new session");
    let resumed = audio_after(&sink, started + Duration::from_secs(5));
    assert!(
        resumed >= 1.0,
        "only {resumed:.2} s after the reconnect\n{log}"
    );
}

#[test]
fn lossy_reordering_network_keeps_the_timeline() {
    let sink = WsSink::start();
    let (_src, base) = start_testsrc(&[]);
    let log = pull_for(
        &format!("{base}/whep/lossy?loss=5&reorder=10&fec=10"),
        &sink,
        8,
    );
    let msgs = sink.messages();
    let (samples, metas) = decode_seed(&msgs);
    // Concealment fills every lost packet: audio duration still equals wall time.
    let full: Vec<_> = metas.iter().filter(|m| m.samples == 3_200).collect();
    let wall = full[full.len() - 1]
        .at
        .duration_since(full[0].at)
        .as_secs_f64();
    let audio = (full.len() - 1) as f64 * 0.2;
    let ratio = audio / wall;
    assert!((0.97..=1.03).contains(&ratio), "ratio {ratio:.4}\n{log}");
    let f = dominant_frequencies(&samples[8_000..], 16_000, 2);
    assert!(
        (f[0] - 440.0).abs() <= 2.0 && (f[1] - 660.0).abs() <= 2.0,
        "{f:?}"
    );
    // The final stats line reports losses (5 % of ~400 packets).
    let line = log
        .lines()
        .rev()
        .find(|l| l.contains("stream finished"))
        .expect("final stats");
    let lost: u64 = line
        .split_whitespace()
        .find_map(|w| w.strip_prefix("lost="))
        .and_then(|v| v.parse().ok())
        .expect("lost=");
    assert!(lost >= 5, "lost={lost}: {line}");
}
