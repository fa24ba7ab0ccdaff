//! A node heals WHEP-side failures by itself, and the API shows it (issue 3, SPEC §2–3): a
//! source that drops its session, a publisher that goes silent (SRS-style, no signal at all),
//! and a source process that is killed and comes back. Real `serve` and `testsrc` processes,
//! a recording sink, 127.0.0.1 only.

mod common;

use std::time::{Duration, Instant};

use common::audio::decode_seed_by_stream;
use common::net::free_port;
use common::node::Node;
use common::spectrum::dominant_frequencies;
use common::testsrc::{start_testsrc, start_testsrc_on};
use common::ws_sink::WsSink;
use serde_json::{json, Value};

/// The states a stream went through, as polled from `GET /v1/streams/{id}`, with the
/// instant each one was first seen.
#[derive(Default, Debug)]
struct Timeline(Vec<(String, Instant)>);

impl Timeline {
    fn observe(&mut self, v: &Value) {
        let state = v["state"].as_str().unwrap_or("?").to_owned();
        if self.0.last().is_none_or(|(s, _)| *s != state) {
            self.0.push((state, Instant::now()));
        }
    }

    fn states(&self) -> Vec<&str> {
        self.0.iter().map(|(s, _)| s.as_str()).collect()
    }

    /// Whether `want` appears in order (not necessarily adjacent).
    fn went_through(&self, want: &[&str]) -> bool {
        let mut it = self.states().into_iter();
        want.iter().all(|w| it.any(|s| s == *w))
    }
}

fn post(node: &Node, id: &str, whep: String, sink: &WsSink) {
    let body = json!({"stmId": id, "whepUrl": whep, "wsUrl": sink.url("/r/{stmId}")});
    let r = node.json("POST", "/v1/streams", &body);
    assert_eq!(r.status, 201, "{}", r.body_text());
}

/// Seconds of audio `id` delivered after `t`, and the tones of that audio.
fn audio_after(sink: &WsSink, id: &str, t: Instant) -> (f64, Vec<f64>) {
    let by = decode_seed_by_stream(&sink.messages());
    let Some((samples, metas)) = by.get(id) else {
        return (0.0, vec![]);
    };
    let Some(first) = metas.iter().find(|m| m.at > t) else {
        return (0.0, vec![]);
    };
    let tail = &samples[first.offset..];
    let secs = tail.len() as f64 / 16_000.0;
    let tones = if tail.len() >= 16_000 {
        dominant_frequencies(&tail[..16_000], 16_000, 2)
    } else {
        vec![]
    };
    (secs, tones)
}

fn tones_ok(f: &[f64], want: [f64; 2]) -> bool {
    f.len() == 2 && (f[0] - want[0]).abs() <= 2.0 && (f[1] - want[1]).abs() <= 2.0
}

#[test]
fn dropped_session_and_silent_publisher_reconnect_with_states_in_the_api() {
    let sink = WsSink::start();
    let (_src, src) = start_testsrc(&[]);
    // Short media timeouts keep the test short: stalled after 1 s, reconnect after 3 s.
    let node = Node::start_with(
        None,
        &[
            ("WHEP_BRIDGE_MEDIA_STALL_SECS", "1"),
            ("WHEP_BRIDGE_MEDIA_RECONNECT_SECS", "3"),
        ],
    );
    // The source ends the session after 3 s; the publisher of the other goes quiet after 3 s
    // (RTP stops, the session stays up). Each new session does the same again.
    post(
        &node,
        "dropped",
        format!("{src}/whep/dropped?drop_after=3"),
        &sink,
    );
    post(
        &node,
        "quiet",
        format!("{src}/whep/quiet?silence_after=3"),
        &sink,
    );
    let start = Instant::now();
    let mut lines = [Timeline::default(), Timeline::default()];
    while start.elapsed() < Duration::from_secs(13) {
        for (t, id) in lines.iter_mut().zip(["dropped", "quiet"]) {
            t.observe(&node.get(id));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    for (t, id) in lines.iter().zip(["dropped", "quiet"]) {
        assert!(
            t.went_through(&["live", "stalled", "reconnecting", "live"]),
            "{id}: states {:?}\n{}",
            t.states(),
            node.guard.log_tail()
        );
        let v = node.get(id);
        assert!(v["stats"]["reconnects"].as_u64() >= Some(1), "{v}");
        assert!(v["stats"]["whepConnects"].as_u64() >= Some(2), "{v}");
        // Audio came back after the first reconnect, with the source's tones.
        let back =
            t.0.iter()
                .skip_while(|(s, _)| s != "reconnecting")
                .find(|(s, _)| s == "live")
                .map(|(_, at)| *at)
                .expect("live again");
        let (secs, f) = audio_after(&sink, id, back);
        assert!(secs >= 1.0, "{id}: {secs:.2} s of audio after reconnecting");
        assert!(tones_ok(&f, [440.0, 660.0]), "{id}: tones {f:?}");
    }
    let quiet = node.get("quiet");
    let err = quiet["lastError"].as_str().unwrap_or_default().to_owned();
    let log = node.guard.output();
    assert!(
        log.contains("no RTP for 3 s"),
        "silent publisher not timed out: {quiet} {err}"
    );
}

#[test]
fn killed_source_is_reconnected_when_it_comes_back_with_default_timeouts() {
    let sink = WsSink::start();
    let listen = format!("127.0.0.1:{}", free_port());
    let (mut src, base) = start_testsrc_on(&listen, &[]);
    let node = Node::start(None);
    post(
        &node,
        "k1",
        format!("{base}/whep/k1?freq=500&freq_r=900"),
        &sink,
    );
    let mut line = Timeline::default();
    let deadline = Instant::now() + Duration::from_secs(15);
    while node.get("k1")["state"] != "live" {
        assert!(Instant::now() < deadline, "{}", node.guard.log_tail());
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_secs(2));

    // The source process dies (no DELETE, no DTLS close, nothing) and is back 1 s later on
    // the same address, as a restarted media server would be.
    src.kill();
    let killed = Instant::now();
    std::thread::sleep(Duration::from_secs(1));
    let (_src2, _) = start_testsrc_on(&listen, &[]);

    let mut resumed = None;
    while killed.elapsed() < Duration::from_secs(30) {
        line.observe(&node.get("k1"));
        let by = decode_seed_by_stream(&sink.messages());
        // Chunks arrive every 200 ms while audio flows; the first one more than 1 s after
        // the kill is new audio.
        if let Some(at) = by.get("k1").and_then(|(_, m)| {
            m.iter()
                .map(|c| c.at)
                .find(|at| *at > killed + Duration::from_secs(1))
        }) {
            resumed = Some(at);
            if line.states().last() == Some(&"live") {
                break;
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let resumed = resumed.unwrap_or_else(|| {
        panic!(
            "audio never resumed; states {:?}\n{}",
            line.states(),
            node.guard.log_tail()
        )
    });
    let gap = resumed.duration_since(killed);
    eprintln!(
        "WHEP peer death: audio resumed {:.2} s after the source was killed (back after 1 s); \
         states {:?}",
        gap.as_secs_f64(),
        line.states()
    );
    assert!(
        line.went_through(&["stalled", "reconnecting", "live"])
            || line.went_through(&["reconnecting", "live"]),
        "states {:?}",
        line.states()
    );
    std::thread::sleep(Duration::from_secs(2));
    let (secs, f) = audio_after(&sink, "k1", resumed);
    assert!(secs >= 1.5, "{secs:.2} s after resuming");
    assert!(tones_ok(&f, [500.0, 900.0]), "tones {f:?}");
}
