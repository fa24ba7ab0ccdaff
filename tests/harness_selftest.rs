//! Self-test of the shared integration-test helpers in `tests/common`.
//!
//! The helpers judge the product (frequencies, continuity, envelopes, consumer outages), so
//! they must themselves be proven: on synthetic signals with known answers, and on real Opus
//! audio produced exactly as whep-bridge produces it (48 kHz stereo Opus decoded by libopus
//! straight to 16 kHz mono).

mod common;

use std::io::{Read, Write};
use std::net::TcpListener;
use std::process::Command;
use std::time::{Duration, Instant};

use base64::Engine as _;
use common::audio::{deinterleave, downmix, i16_to_s16le, rms};
use common::continuity::{DEFAULT_PEAK_THRESHOLD, DEFAULT_THRESHOLD};
use common::tone::{opus_decode, opus_encode_stereo_48k, opus_roundtrip_16k_mono, stereo_tones};
use common::*;
use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

const RATE: u32 = 16_000;
const FREQS: [f64; 2] = [440.0, 660.0];

/// 5 s of the reference product signal, trimmed of the decoder warm-up.
fn opus_signal(seconds: f64) -> Vec<i16> {
    let pcm = opus_roundtrip_16k_mono(440.0, 660.0, seconds, 0.3);
    let skip = (RATE * OPUS_WARMUP_MS / 1000) as usize;
    pcm[skip..].to_vec()
}

fn cut(pcm: &[i16], at: usize, len: usize) -> Vec<i16> {
    let mut v = pcm[..at].to_vec();
    v.extend_from_slice(&pcm[at + len..]);
    v
}

fn duplicate(pcm: &[i16], at: usize, len: usize) -> Vec<i16> {
    let mut v = pcm[..at + len].to_vec();
    v.extend_from_slice(&pcm[at..]);
    v
}

// ---------------------------------------------------------------- net / process

#[test]
fn free_ports_are_bindable_on_loopback() {
    let p = free_port();
    assert!(p > 0);
    TcpListener::bind(("127.0.0.1", p)).expect("free tcp port can be bound");
    let u = free_udp_port();
    std::net::UdpSocket::bind(("127.0.0.1", u)).expect("free udp port can be bound");
}

/// Serve `responses` (one per connection) from a background thread; returns the base URL.
fn canned_http(responses: Vec<&'static str>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for resp in responses {
            let Ok((mut s, _)) = listener.accept() else {
                return;
            };
            let mut buf = [0u8; 2048];
            let _ = s.read(&mut buf);
            let _ = s.write_all(resp.as_bytes());
        }
    });
    format!("http://127.0.0.1:{port}")
}

#[test]
fn wait_http_ok_retries_until_2xx_and_decodes_chunked_bodies() {
    let base = canned_http(vec![
        "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 4\r\nConnection: close\r\n\r\nbusy",
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nX-Test: yes\r\nConnection: close\r\n\r\n\
         5\r\nhello\r\n7\r\n, world\r\n0\r\n\r\n",
    ]);
    let r = wait_http_ok(&format!("{base}/health?x=1"), Duration::from_secs(5)).unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.header("x-test"), Some("yes"));
    assert_eq!(r.body_text(), "hello, world");
}

#[test]
fn wait_http_ok_gives_up_after_timeout() {
    let port = free_port(); // nothing listens there
    let t0 = Instant::now();
    let err = wait_http_ok(
        &format!("http://127.0.0.1:{port}/"),
        Duration::from_millis(300),
    )
    .unwrap_err();
    assert!(t0.elapsed() < Duration::from_secs(3), "bounded wait");
    assert!(err.contains("not ready"), "{err}");
}

#[test]
fn child_guard_captures_output_and_kills_on_drop() {
    let mut cmd = Command::new("sh");
    cmd.args(["-c", "echo ready-out; echo oops-err >&2; exec sleep 30"]);
    let mut child = ChildGuard::spawn("sleeper", &mut cmd).unwrap();
    child
        .wait_for_output("ready-out", Duration::from_secs(5))
        .unwrap();
    child
        .wait_for_output("oops-err", Duration::from_secs(5))
        .unwrap();
    assert!(child.stdout().contains("ready-out") && !child.stdout().contains("oops-err"));
    assert!(child.stderr().contains("oops-err"));
    assert!(child.is_running());
    let pid = child.pid();
    drop(child);
    // Reaped by the guard, so the pid no longer exists.
    assert!(!std::path::Path::new(&format!("/proc/{pid}")).exists());
}

#[test]
fn child_guard_reports_early_exit_and_terminates() {
    let mut cmd = Command::new("sh");
    cmd.args(["-c", "echo bye; exit 3"]);
    let mut child = ChildGuard::spawn("quitter", &mut cmd).unwrap();
    let err = child
        .wait_for_output("never printed", Duration::from_secs(5))
        .unwrap_err();
    assert!(err.contains("exited") && err.contains("bye"), "{err}");
    assert_eq!(child.try_wait().and_then(|s| s.code()), Some(3));

    let mut cmd = Command::new("sleep");
    cmd.arg("30");
    let mut child = ChildGuard::spawn("sleeper", &mut cmd).unwrap();
    let status = child
        .terminate(Duration::from_secs(5))
        .expect("exits on SIGTERM");
    assert!(!status.success());
}

#[test]
fn bin_path_is_the_built_product_binary() {
    let p = bin_path();
    assert!(p.is_file(), "{p:?}");
    assert!(p.ends_with("whep-bridge"));
}

// ---------------------------------------------------------------- WsSink

#[tokio::test]
async fn ws_sink_records_messages_paths_and_headers() {
    let sink = WsSink::start();
    let url = sink.url("/audio/stm-1?trace=abc");
    assert!(url.starts_with("ws://127.0.0.1:"));
    let mut req = url.as_str().into_client_request().unwrap();
    req.headers_mut()
        .insert("Authorization", "Bearer t0k".parse().unwrap());
    let (mut ws, _) = tokio_tungstenite::connect_async(req).await.unwrap();
    ws.send(Message::text("hello")).await.unwrap();
    ws.send(Message::binary(vec![1u8, 2, 3])).await.unwrap();
    ws.send(Message::Ping(vec![9u8].into())).await.unwrap();
    // The pong proves the sink keeps reading and answering keepalives.
    let pong = tokio::time::timeout(Duration::from_secs(5), ws.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(matches!(pong, Message::Pong(_)), "{pong:?}");
    ws.close(None).await.unwrap();
    assert!(
        sink.wait_until_async(Duration::from_secs(5), |m| m.len() >= 3)
            .await
    );

    let msgs = sink.messages();
    assert_eq!(msgs[0].text(), Some("hello"));
    assert_eq!(msgs[1].binary(), Some(&[1u8, 2, 3][..]));
    assert!(msgs[2].is_close());
    assert!(msgs.iter().all(|m| m.conn == 0));
    assert!(msgs[0].at <= msgs[1].at);
    let conns = sink.connections();
    assert_eq!(conns.len(), 1);
    assert_eq!(conns[0].path, "/audio/stm-1?trace=abc");
    assert_eq!(conns[0].header("authorization"), Some("Bearer t0k"));
    assert_eq!(conns[0].pings, 1);
}

#[tokio::test]
async fn ws_sink_close_all_and_refuse_for_simulate_an_outage() {
    let sink = WsSink::start();
    let url = sink.url("x");
    let (mut a, _) = tokio_tungstenite::connect_async(url.as_str())
        .await
        .unwrap();
    let (mut b, _) = tokio_tungstenite::connect_async(url.as_str())
        .await
        .unwrap();
    a.send(Message::text("a0")).await.unwrap();
    b.send(Message::text("b0")).await.unwrap();
    assert!(
        sink.wait_until_async(Duration::from_secs(5), |m| m.len() == 2)
            .await
    );
    assert_eq!(sink.open_count(), 2);

    sink.refuse_for(Duration::from_millis(700));
    sink.close_all();
    // Both clients see their connection end without a close frame.
    for ws in [&mut a, &mut b] {
        let end = tokio::time::timeout(Duration::from_secs(5), ws.next())
            .await
            .expect("connection ends promptly");
        assert!(
            !matches!(end, Some(Ok(Message::Close(_)))),
            "abrupt close must not send a close frame: {end:?}"
        );
    }
    assert_eq!(sink.open_count(), 0);
    assert!(sink.connections().iter().all(|c| c.closed.is_some()));

    // While refusing, handshakes fail.
    assert!(tokio_tungstenite::connect_async(url.as_str())
        .await
        .is_err());
    assert!(sink.refused_count() >= 1);
    tokio::time::sleep(Duration::from_millis(800)).await;
    let (mut c, _) = tokio_tungstenite::connect_async(url.as_str())
        .await
        .unwrap();
    c.send(Message::text("c0")).await.unwrap();
    assert!(
        sink.wait_until_async(Duration::from_secs(5), |m| m.len() == 3)
            .await
    );
    let msgs = sink.messages();
    assert_eq!(msgs[2].text(), Some("c0"));
    assert_eq!(msgs[2].conn, 2, "third accepted connection");
    assert_eq!(sink.connection_count(), 3);
}

#[test]
fn ws_sink_works_from_a_plain_test_and_stops() {
    let mut sink = WsSink::start();
    let port = sink.port();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let (mut ws, _) = tokio_tungstenite::connect_async(sink.url("p"))
            .await
            .unwrap();
        ws.send(Message::text("x")).await.unwrap();
    });
    assert!(sink.wait_until(Duration::from_secs(5), |m| !m.is_empty()));
    assert!(sink.wait_connections(1, Duration::from_secs(1)));
    sink.stop();
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", port)).is_err(),
        "listener closed after stop"
    );
}

// ---------------------------------------------------------------- seed decoding

fn seed_frame(trace: &str, stm: &str, ts: &str, pcm: &[i16]) -> String {
    let data = base64::engine::general_purpose::STANDARD.encode(i16_to_s16le(pcm));
    format!(r#"{{"traceId":"{trace}","stmId":"{stm}","timestamp":{ts},"data":"{data}"}}"#)
}

fn text_msg(conn: usize, t: String) -> WsMessage {
    WsMessage {
        conn,
        at: Instant::now(),
        payload: WsPayload::Text(t),
    }
}

#[test]
fn decode_seed_concatenates_pcm_with_per_chunk_facts() {
    let msgs = vec![
        text_msg(0, seed_frame("t1", "s1", "1700000000.25", &[1, -2, 3])),
        text_msg(
            1,
            seed_frame("t1", "s1", "1700000000.5", &[i16::MIN, i16::MAX]),
        ),
        WsMessage {
            conn: 1,
            at: Instant::now(),
            payload: WsPayload::Close(Some((1000, String::new()))),
        },
    ];
    let (pcm, meta) = decode_seed(&msgs);
    assert_eq!(pcm, vec![1, -2, 3, i16::MIN, i16::MAX]);
    assert_eq!(meta.len(), 2);
    assert_eq!((meta[1].offset, meta[1].samples, meta[1].conn), (3, 2, 1));
    assert_eq!(meta[0].trace_id, "t1");
    assert_eq!(meta[0].stm_id, "s1");
    assert!((meta[1].timestamp - 1_700_000_000.5).abs() < 1e-6);

    let mixed = vec![
        text_msg(0, seed_frame("a", "A", "1.5", &[1])),
        text_msg(0, seed_frame("b", "B", "1.5", &[2, 2])),
        text_msg(0, seed_frame("a", "A", "1.75", &[3])),
    ];
    let by = decode_seed_by_stream(&mixed);
    assert_eq!(by["A"].0, vec![1, 3]);
    assert_eq!(by["B"].0, vec![2, 2]);
}

#[test]
#[should_panic(expected = "exactly traceId, stmId, timestamp, data")]
fn decode_seed_rejects_extra_fields() {
    let t = r#"{"traceId":"t","stmId":"s","timestamp":1.5,"data":"AAA=","seq":1}"#;
    decode_seed_json(t);
}

#[test]
#[should_panic(expected = "must be a JSON float")]
fn decode_seed_rejects_integer_timestamp() {
    decode_seed_json(&seed_frame("t", "s", "1700000000", &[0]));
}

#[test]
#[should_panic(expected = "binary frame")]
fn decode_seed_rejects_binary_frames() {
    let m = WsMessage {
        conn: 0,
        at: Instant::now(),
        payload: WsPayload::Binary(vec![0, 0]),
    };
    decode_seed(&[m]);
}

#[test]
fn pcm_utilities_split_and_downmix_stereo() {
    let st = stereo_tones(440.0, 660.0, 48_000, 0, 48_000, 0.5);
    let (l, r) = deinterleave(&st);
    assert_eq!(l.len(), 48_000);
    assert!((dominant_frequencies(&l, 48_000, 1)[0] - 440.0).abs() < 0.05);
    assert!((dominant_frequencies(&r, 48_000, 1)[0] - 660.0).abs() < 0.05);
    let m = downmix(&st);
    assert_eq!(m.len(), 48_000);
    let expected_rms = 0.5 * 32767.0 / 2.0; // two half-level sines at 0.5·peak each
    assert!(
        (rms(&m) - expected_rms).abs() / expected_rms < 0.01,
        "{}",
        rms(&m)
    );
}

// ---------------------------------------------------------------- frequencies

#[test]
fn dominant_frequencies_are_accurate_on_synthetic_tones() {
    for (freqs, secs) in [
        ([440.0, 660.0], 1.0),
        ([441.37, 659.11], 1.0),
        ([1000.0, 1234.56], 2.5),
        ([300.2, 520.7], 5.0),
    ] {
        let x = common::tone::mono_tones(&freqs, RATE, (secs * RATE as f64) as usize, 0.3);
        let got = dominant_frequencies(&x, RATE, 2);
        assert_eq!(got.len(), 2);
        for (g, f) in got.iter().zip(freqs) {
            assert!((g - f).abs() < 0.05, "{freqs:?} over {secs}s: got {got:?}");
        }
    }
    // A weak tone 26 dB under a strong one is still found.
    let strong = common::tone::mono_tones(&[500.0], RATE, RATE as usize, 0.5);
    let weak = common::tone::mono_tones(&[730.0], RATE, RATE as usize, 0.025);
    let mix: Vec<i16> = strong.iter().zip(&weak).map(|(a, b)| a + b).collect();
    let got = dominant_frequencies(&mix, RATE, 2);
    assert!(
        (got[0] - 500.0).abs() < 0.05 && (got[1] - 730.0).abs() < 0.05,
        "{got:?}"
    );
}

#[test]
fn dominant_frequencies_is_fast_enough_in_debug() {
    let x = opus_roundtrip_16k_mono(440.0, 660.0, 5.0, 0.3);
    let t0 = Instant::now();
    let got = dominant_frequencies(&x, RATE, 2);
    let took = t0.elapsed();
    eprintln!("dominant_frequencies on 5 s @16 kHz: {took:?} -> {got:?}");
    assert!(
        (got[0] - 440.0).abs() < 0.1 && (got[1] - 660.0).abs() < 0.1,
        "{got:?}"
    );
    // Budget is < 1 s on an idle machine; allow slack for a loaded CI box.
    assert!(took < Duration::from_secs(3), "{took:?}");
}

#[test]
fn tone_amplitude_measures_presence_and_absence() {
    let x = common::tone::mono_tones(&[440.0], RATE, 3200, 0.25);
    let a = tone_amplitude(&x, RATE, 440.0);
    assert!((a / (0.25 * 32767.0) - 1.0).abs() < 0.01, "{a}");
    assert!(tone_amplitude(&x, RATE, 660.0) < 0.01 * a);
}

// ---------------------------------------------------------------- continuity on real Opus

#[test]
fn continuity_clean_opus_stream_is_continuous() {
    let x = opus_signal(5.0);
    let freqs = dominant_frequencies(&x, RATE, 2);
    let rep = continuity_report(&x, RATE, &freqs);
    eprintln!("clean: {rep}");
    assert!(rep.is_continuous(), "{rep}");
    assert!(rep.worst < DEFAULT_THRESHOLD / 3.0, "noise margin: {rep}");
    assert!(
        rep.worst_peak() < DEFAULT_PEAK_THRESHOLD / 3.0,
        "noise margin: {rep}"
    );
    assert_eq!(rep.errors.len(), x.len() / 320);
    // Mono downmix of 0.3-peak tones: each tone at ~0.15 full scale.
    for a in &rep.ref_amplitudes {
        assert!((a / (0.15 * 32767.0) - 1.0).abs() < 0.1, "{rep}");
    }
}

#[test]
fn continuity_flags_20ms_removed() {
    let x = opus_signal(5.0);
    let at = 2 * RATE as usize + 123;
    let rep = continuity_report(&cut(&x, at, 320), RATE, &FREQS);
    eprintln!("removed 320: {rep}");
    assert!(!rep.is_continuous());
    assert_eq!(rep.events().len(), 1, "{rep}");
    assert!(rep.events()[0].contains(&at), "{rep}");
}

#[test]
fn continuity_flags_20ms_duplicated() {
    let x = opus_signal(5.0);
    let at = 3 * RATE as usize; // window-aligned: a repeated whole chunk
    let rep = continuity_report(&duplicate(&x, at, 320), RATE, &FREQS);
    eprintln!("duplicated 320: {rep}");
    assert_eq!(rep.events().len(), 1, "{rep}");
    assert!(
        rep.bad_positions()
            .iter()
            .any(|&p| p.abs_diff(at + 320) <= 320),
        "{rep}"
    );
}

#[test]
fn continuity_flags_7_samples_removed() {
    let x = opus_signal(5.0);
    for at in [
        RATE as usize + 160,
        2 * RATE as usize,
        4 * RATE as usize + 7,
    ] {
        let rep = continuity_report(&cut(&x, at, 7), RATE, &FREQS);
        assert_eq!(rep.events().len(), 1, "cut at {at}: {rep}");
        assert!(rep.worst > 10.0 * DEFAULT_THRESHOLD, "cut at {at}: {rep}");
    }
}

#[test]
fn continuity_margins_cover_small_slips_silence_and_clicks() {
    let x = opus_signal(5.0);
    let at = 2 * RATE as usize + 77;
    let mut table = Vec::new();
    for d in [1usize, 2, 3, 7, 50, 320, 800] {
        let rep = continuity_report(&cut(&x, at, d), RATE, &FREQS);
        table.push(format!(
            "cut {d}: worst {:.4} bad {}",
            rep.worst,
            rep.bad_count()
        ));
        if d == 800 {
            // 50 ms is a whole number of periods of both 440 and 660 Hz: invisible by design.
            assert!(rep.is_continuous(), "{rep}");
            continue;
        }
        assert_eq!(rep.events().len(), 1, "slip of {d} samples: {rep}");
    }
    // 100 ms of silence (a hole filled with zeros): every silent window, plus none elsewhere.
    let mut gap = x.clone();
    gap[RATE as usize..RATE as usize + 1600].fill(0);
    let rep = continuity_report(&gap, RATE, &FREQS);
    table.push(format!(
        "silence 100ms: worst {:.3} bad {}",
        rep.worst,
        rep.bad_count()
    ));
    assert_eq!(rep.events().len(), 1, "{rep}");
    assert_eq!(
        rep.events()[0],
        RATE as usize..RATE as usize + 1600,
        "{rep}"
    );
    // A single-sample click of 4000 LSB (0.4 of the signal peak) on an otherwise clean stream.
    let mut click = x.clone();
    click[3 * RATE as usize + 11] = click[3 * RATE as usize + 11].saturating_add(4000);
    let rep = continuity_report(&click, RATE, &FREQS);
    table.push(format!(
        "click: worst {:.4} bad {}",
        rep.worst,
        rep.bad_count()
    ));
    assert_eq!(rep.bad_positions(), vec![3 * RATE as usize], "{rep}");
    eprintln!("{}", table.join("\n"));
}

#[test]
fn continuity_tolerates_opus_noise_down_to_24_kbits() {
    use common::tone::opus_encode_stereo_48k_at;
    let stereo = stereo_tones(440.0, 660.0, 48_000, 0, 48_000 * 5, 0.3);
    for (bitrate, app) in [
        (96_000, opus::Application::Voip),  // aiortc's encoder
        (64_000, opus::Application::Audio), // whep-bridge's testsrc
        (24_000, opus::Application::Voip),
    ] {
        let pcm = opus_decode(
            &opus_encode_stereo_48k_at(&stereo, Some(bitrate), app),
            RATE,
            1,
        );
        let rep = continuity_report_with(&pcm, RATE, &FREQS, &ContinuityConfig::after_warmup());
        eprintln!("{bitrate} bit/s {app:?}: {rep}");
        assert!(rep.is_continuous(), "{bitrate}: {rep}");
    }
}

#[test]
fn continuity_tolerates_frequency_error_over_long_recordings() {
    // 20 s, with frequencies deliberately 0.2 Hz off: the phase drifts by 25 rad over the
    // recording, yet per-window continuation keeps every window clean.
    let x = opus_signal(20.0);
    let rep = continuity_report(&x, RATE, &[440.2, 659.8]);
    assert!(rep.is_continuous(), "{rep}");
    let rep = continuity_report(&cut(&x, 15 * RATE as usize, 7), RATE, &[440.2, 659.8]);
    assert_eq!(rep.events().len(), 1, "{rep}");
}

#[test]
fn continuity_warmup_of_a_fresh_decoder_is_covered_by_skip() {
    // Direct 16 kHz mono decode (the product's usual path).
    let raw = opus_roundtrip_16k_mono(440.0, 660.0, 2.0, 0.3);
    let no_skip = continuity_report(&raw, RATE, &FREQS);
    eprintln!("direct decode, no skip: {no_skip}");
    let skipped = continuity_report_with(&raw, RATE, &FREQS, &ContinuityConfig::after_warmup());
    assert!(skipped.is_continuous(), "{skipped}");
    // Any transient is confined to the skipped warm-up.
    assert!(
        no_skip
            .bad_positions()
            .iter()
            .all(|&p| p < (RATE * OPUS_WARMUP_MS / 1000) as usize),
        "{no_skip}"
    );

    // 48 kHz stereo decode, downmix, rubato FFT resample to 16 kHz (the product's path for
    // non-native rates): adds the resampler's delay/ramp at the start.
    let stereo = stereo_tones(440.0, 660.0, 48_000, 0, 96_000, 0.3);
    let dec48 = downmix(&opus_decode(&opus_encode_stereo_48k(&stereo), 48_000, 2));
    let res = resample_48k_to_16k(&dec48);
    assert_eq!(res.len(), dec48.len() / 3);
    let no_skip = continuity_report(&res, RATE, &FREQS);
    eprintln!("48k decode + rubato, no skip: {no_skip}");
    let skipped = continuity_report_with(&res, RATE, &FREQS, &ContinuityConfig::after_warmup());
    assert!(skipped.is_continuous(), "{skipped}");
}

/// 48 kHz mono → 16 kHz mono with rubato's synchronous FFT resampler in 20 ms blocks.
fn resample_48k_to_16k(x: &[i16]) -> Vec<i16> {
    use rubato::audioadapter_buffers::direct::InterleavedSlice;
    use rubato::{Fft, FixedSync, Resampler};
    let mut fft = Fft::<f32>::new(48_000, 16_000, 960, 1, FixedSync::Both).unwrap();
    let mut out = Vec::new();
    let mut block = vec![0f32; 320];
    for chunk in x.chunks_exact(960) {
        let input: Vec<f32> = chunk.iter().map(|&s| f32::from(s) / 32768.0).collect();
        let inp = InterleavedSlice::new(&input[..], 1, 960).unwrap();
        let mut outp = InterleavedSlice::new_mut(&mut block[..], 1, 320).unwrap();
        fft.process_into_buffer(&inp, &mut outp, None).unwrap();
        out.extend(
            block
                .iter()
                .map(|&v| (v * 32768.0).round().clamp(-32768.0, 32767.0) as i16),
        );
    }
    out
}

// ---------------------------------------------------------------- interop source

#[test]
fn aiortc_whep_source_serves_audio_to_an_aiortc_client() {
    let python = common::interop::interop_python().expect(
        "no Python with aiortc/aiohttp: run `bash .ci/run` once, or create a venv from \
         tests/interop/requirements.txt and set INTEROP_PYTHON",
    );
    let server = AiortcWhep::start(440.0, 660.0).unwrap();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/interop/check_client.py");
    let mut cmd = Command::new(python);
    cmd.arg(script)
        .args(["--url", &server.whep_url("selftest"), "--seconds", "2"]);
    let mut client = ChildGuard::spawn("check_client", &mut cmd).unwrap();
    let status = client
        .wait_exit(Duration::from_secs(30))
        .expect("client finishes");
    let out = client.stdout();
    assert!(status.success(), "{}", client.log_tail());
    assert!(out.contains("POST status=201"), "{out}");
    assert!(out.contains("sample_rate=48000 channels=2"), "{out}");
    assert!(
        out.contains("DELETE") && out.contains("status=200"),
        "{out}"
    );
    let frames: usize = out
        .split("frames=")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    assert!(frames >= 60, "expected ~100 frames of 20 ms in 2 s: {out}");
}
