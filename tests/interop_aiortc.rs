//! Interop acceptance: `whep-bridge pull` against a WHEP source that shares no code with
//! whep-bridge (Python aiortc, `tests/interop/aiortc_whep.py`) sending Opus 48 kHz stereo
//! with a different tone per channel. The consumer must receive 10 s of continuous,
//! correct seed-format audio.
//!
//! Needs a Python with aiortc (`.ci/run` creates `.venv`); the test fails, not skips,
//! without one, so CI cannot pass while silently not testing interop.

mod common;

use std::process::Command;
use std::time::Duration;

use common::audio::decode_seed;
use common::continuity::{continuity_report_with, ContinuityConfig};
use common::interop::AiortcWhep;
use common::process::{bin_path, ChildGuard};
use common::spectrum::dominant_frequencies;
use common::ws_sink::WsSink;

#[test]
fn pull_from_aiortc_whep_source_for_10_seconds() {
    let server = AiortcWhep::start(440.0, 660.0).expect("aiortc WHEP source");
    let sink = WsSink::start();
    let trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let mut pull = ChildGuard::spawn(
        "pull-aiortc",
        Command::new(bin_path()).args([
            "pull",
            "--whep",
            &server.whep_url("interop"),
            "--ws",
            &sink.url("/consumer"),
            "--rtc-ip",
            "127.0.0.1",
            "--stm-id",
            "interop-1",
            "--trace-id",
            trace,
            "--duration",
            "11",
        ]),
    )
    .expect("spawn pull");
    let status = pull
        .wait_exit(Duration::from_secs(40))
        .unwrap_or_else(|| panic!("pull hung\n{}", pull.log_tail()));
    assert!(status.success(), "pull failed\n{}", pull.log_tail());

    let msgs = sink.messages();
    let (samples, metas) = decode_seed(&msgs); // exactly the four seed fields
    assert!(metas
        .iter()
        .all(|m| m.stm_id == "interop-1" && m.trace_id == trace));
    let full: Vec<_> = metas.iter().filter(|m| m.samples == 3_200).collect();
    assert!(
        full.len() >= 50,
        "only {} full chunks (need 10 s)\n{}",
        full.len(),
        pull.log_tail()
    );
    let wall = full[full.len() - 1]
        .at
        .duration_since(full[0].at)
        .as_secs_f64();
    let audio = (full.len() - 1) as f64 * 0.2;
    assert!(wall >= 9.5, "{wall:.2} s of wall time");
    let ratio = audio / wall;
    assert!(
        (0.97..=1.03).contains(&ratio),
        "{audio:.2} s audio over {wall:.2} s wall (ratio {ratio:.4})"
    );
    let f = dominant_frequencies(&samples[8_000..], 16_000, 2);
    assert!(
        f.len() == 2 && (f[0] - 440.0).abs() <= 2.0 && (f[1] - 660.0).abs() <= 2.0,
        "tones {f:?}"
    );
    let report = continuity_report_with(
        &samples,
        16_000,
        &[440.0, 660.0],
        &ContinuityConfig::after_warmup(),
    );
    assert!(report.is_continuous(), "not continuous: {report}");
    // 11 s on one connection: the 10 s keepalive ping was sent.
    assert!(sink.connections()[0].pings >= 1, "no WebSocket ping");
    // The clean stop sent DELETE to the source.
    let src_log = server.child.output();
    assert!(
        src_log.contains("deleted"),
        "no DELETE seen by the source:\n{src_log}"
    );
}
