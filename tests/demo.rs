//! `whep-bridge demo` (the README's first command) as a user runs it: the real binary, no
//! SRS, no Redis, nothing else started. It must create its streams through its own API
//! (visible from outside while it runs), deliver real-time audio for the requested time,
//! print a summary with every stream, stop cleanly and exit 0 with PASS.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::net::{free_port, http_get};
use common::process::{bin_path, ChildGuard};
use serde_json::Value;

const STREAMS: usize = 3;
const SECONDS: f64 = 8.0;

/// One stream line of the summary.
#[derive(Debug)]
struct SummaryRow {
    stm_id: String,
    delivered_s: f64,
    wall_s: f64,
    reconnects: u64,
}

/// The stream lines between the summary's header and its CPU line.
fn summary_rows(stdout: &str) -> Vec<SummaryRow> {
    let secs = |s: &str| -> f64 {
        s.trim_end_matches('s')
            .parse()
            .unwrap_or_else(|_| panic!("not seconds: {s:?}"))
    };
    stdout
        .lines()
        .skip_while(|l| !l.starts_with("Summary"))
        .skip(2)
        .take_while(|l| !l.starts_with("CPU"))
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            assert_eq!(f.len(), 9, "summary line {l:?}");
            SummaryRow {
                stm_id: f[0].to_owned(),
                delivered_s: secs(f[1]),
                wall_s: secs(f[2]),
                reconnects: f[7].parse().expect("reconnects"),
            }
        })
        .collect()
}

/// The streams the node's API lists, as (stmId, state).
fn api_streams(base: &str) -> Option<Vec<(String, String)>> {
    let r = http_get(&format!("{base}/v1/streams"), Duration::from_secs(2)).ok()?;
    if r.status != 200 {
        return None;
    }
    let v: Value = serde_json::from_slice(&r.body).ok()?;
    Some(
        v.as_array()?
            .iter()
            .map(|s| {
                (
                    s["spec"]["stmId"].as_str().unwrap_or_default().to_owned(),
                    s["state"].as_str().unwrap_or_default().to_owned(),
                )
            })
            .collect(),
    )
}

#[test]
fn demo_runs_three_streams_in_real_time_and_passes() {
    let listen = format!("127.0.0.1:{}", free_port());
    let base = format!("http://{listen}");
    let started = Instant::now();
    let mut demo = ChildGuard::spawn(
        "demo",
        Command::new(bin_path()).args([
            "demo",
            "--streams",
            &STREAMS.to_string(),
            "--seconds",
            &SECONDS.to_string(),
            "--listen",
            &listen,
        ]),
    )
    .expect("spawn demo");

    // While it runs, the node's own API shows the streams live.
    let deadline = Instant::now() + Duration::from_secs(30);
    let live = loop {
        if let Some(streams) = api_streams(&base) {
            if streams.len() == STREAMS && streams.iter().all(|(_, s)| s == "live") {
                break streams;
            }
        }
        assert!(
            demo.is_running(),
            "demo exited before its streams were seen live\n{}",
            demo.log_tail()
        );
        assert!(
            Instant::now() < deadline,
            "streams not live through the API within 30 s: {:?}\n{}",
            api_streams(&base),
            demo.log_tail()
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    let mut ids: Vec<String> = live.into_iter().map(|(id, _)| id).collect();
    ids.sort();
    assert_eq!(ids, ["demo-1", "demo-2", "demo-3"]);

    // It ends by itself, after the measured time, with PASS.
    let status = demo
        .wait_exit(Duration::from_secs(60))
        .unwrap_or_else(|| panic!("demo still running after 60 s\n{}", demo.log_tail()));
    let ran = started.elapsed().as_secs_f64();
    let out = demo.stdout();
    assert!(status.success(), "exit {status}\n{}", demo.log_tail());
    assert!(ran >= SECONDS, "ran only {ran:.1} s");
    assert!(
        out.contains("curl -X POST"),
        "no curl hint\n{}",
        demo.log_tail()
    );
    assert!(
        out.contains("\nPASS: 3 stream(s) live"),
        "{}",
        demo.log_tail()
    );

    let rows = summary_rows(&out);
    let names: Vec<&str> = rows.iter().map(|r| r.stm_id.as_str()).collect();
    assert_eq!(names, ["demo-1", "demo-2", "demo-3"], "{out}");
    for r in &rows {
        // The run length, give or take 15 %, and as much audio as wall time (real time).
        assert!(
            (r.delivered_s - SECONDS).abs() <= 0.15 * SECONDS,
            "{r:?} vs {SECONDS} s\n{out}"
        );
        assert!(
            (r.delivered_s - r.wall_s).abs() <= 0.1 * r.wall_s,
            "{r:?}\n{out}"
        );
        assert_eq!(r.reconnects, 0, "{r:?}");
    }
    assert!(out.contains("CPU (% of one core): node "), "{out}");
    assert!(out.contains("Memory: RSS "), "{out}");
    // The drain really happened: every WHEP session deleted, every consumer closed.
    assert!(
        out.contains("0 WHEP session(s) left at the source, 0 consumer connection(s) left open"),
        "{out}"
    );
    // The API is gone once the demo has exited.
    assert!(api_streams(&base).is_none());
}
