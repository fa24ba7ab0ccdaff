//! `GET /v1/streams/{stmId}/listen` (SPEC §5) against a real `whep-bridge serve` process, with
//! testsrc as the WHEP source and a WebSocket sink as the consumer, all on 127.0.0.1.
//!
//! The listener is a raw TCP client, so the test sees exactly what a browser would: status,
//! headers, the 44-byte WAV header, then the PCM (HTTP/1.1 chunked, de-chunked here). The PCM
//! must be the stream's own tones at real-time pace; several listeners must work at once; a
//! listener that never reads must not slow the consumer or change the stream's state; the
//! response must end when the stream goes away.

mod common;

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::audio::{decode_seed_by_stream, deinterleave, s16le_to_i16};
use common::node::{assert_problem, Node, T};
use common::spectrum::dominant_frequencies;
use common::testsrc::start_testsrc;
use common::ws_sink::WsSink;
use serde_json::Value;

/// The node's default output: 16 kHz mono s16le.
const RATE: u32 = 16_000;
const BYTES_PER_SEC: f64 = RATE as f64 * 2.0;
const TONES: [f64; 2] = [520.0, 1_230.0];

fn create(node: &Node, id: &str, src: &str, sink: &WsSink) {
    create_with(node, id, src, sink, serde_json::json!({}));
}

fn create_with(node: &Node, id: &str, src: &str, sink: &WsSink, output: Value) {
    let body = serde_json::json!({
        "stmId": id,
        "whepUrl": format!("{src}/whep/{id}?freq={}&freq_r={}", TONES[0], TONES[1]),
        "wsUrl": sink.url("/asr/{stmId}"),
        "output": output,
    });
    let r = node.json("POST", "/v1/streams", &body);
    assert_eq!(r.status, 201, "{}", r.body_text());
}

fn wait_live(node: &Node, id: &str) {
    node.wait_state(id, "live", Duration::from_secs(15));
}

/// A streaming HTTP/1.1 GET read at the pace the test chooses.
struct Listen {
    stream: TcpStream,
    status: u16,
    headers: Vec<(String, String)>,
    /// Raw bytes received after the response head and not de-chunked yet.
    raw: Vec<u8>,
    /// De-chunked body so far.
    body: Vec<u8>,
    /// The terminating zero-size chunk was seen (the server ended the response).
    ended: bool,
}

impl Listen {
    /// Sends the request only; nothing is read (a listener that never reads).
    fn request(addr: &str, path: &str) -> TcpStream {
        let mut stream = TcpStream::connect(addr).expect("connect");
        let req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\n\r\n");
        stream.write_all(req.as_bytes()).expect("send request");
        stream
    }

    /// Sends the request and reads the response head.
    fn open(addr: &str, path: &str) -> Self {
        Self::read_head(Self::request(addr, path))
    }

    fn read_head(mut stream: TcpStream) -> Self {
        stream.set_read_timeout(Some(T)).expect("timeout");
        let mut raw = Vec::new();
        let mut buf = [0u8; 4096];
        let end = loop {
            if let Some(p) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
                break p;
            }
            let n = stream.read(&mut buf).expect("read response head");
            assert!(n > 0, "connection closed before the response head");
            raw.extend_from_slice(&buf[..n]);
        };
        let head = String::from_utf8_lossy(&raw[..end]).into_owned();
        let mut lines = head.split("\r\n");
        let status = lines
            .next()
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|s| s.parse().ok())
            .expect("status line");
        let headers = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
            .collect();
        let mut l = Self {
            stream,
            status,
            headers,
            raw: raw[end + 4..].to_vec(),
            body: Vec::new(),
            ended: false,
        };
        assert_eq!(l.header("transfer-encoding"), Some("chunked"));
        l.dechunk();
        l
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// Moves every complete chunk from `raw` to `body`.
    fn dechunk(&mut self) {
        while let Some(eol) = self.raw.windows(2).position(|w| w == b"\r\n") {
            let size_text = String::from_utf8_lossy(&self.raw[..eol]).into_owned();
            let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
                .unwrap_or_else(|_| panic!("bad chunk size {size_text:?}"));
            if self.raw.len() < eol + 2 + size + 2 {
                return;
            }
            if size == 0 {
                self.ended = true;
                return;
            }
            self.body
                .extend_from_slice(&self.raw[eol + 2..eol + 2 + size]);
            self.raw.drain(..eol + 2 + size + 2);
        }
    }

    /// Reads whatever arrives for `d` (or until the response ends).
    fn read_for(&mut self, d: Duration) {
        let deadline = Instant::now() + d;
        let mut buf = [0u8; 16 * 1024];
        while !self.ended {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return;
            }
            self.stream
                .set_read_timeout(Some(left.max(Duration::from_millis(1))))
                .expect("timeout");
            match self.stream.read(&mut buf) {
                Ok(0) => return,
                Ok(n) => {
                    self.raw.extend_from_slice(&buf[..n]);
                    self.dechunk();
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    return
                }
                Err(e) => panic!("read: {e}"),
            }
        }
    }

    /// The PCM after the WAV header, checking the header's fields on the way.
    fn pcm(&self) -> Vec<i16> {
        assert!(self.body.len() >= 44, "no WAV header yet");
        check_wav_header(&self.body[..44], RATE, 1);
        s16le_to_i16(&self.body[44..])
    }
}

fn check_wav_header(h: &[u8], rate: u32, channels: u16) {
    let u16_at = |i: usize| u16::from_le_bytes([h[i], h[i + 1]]);
    let u32_at = |i: usize| u32::from_le_bytes([h[i], h[i + 1], h[i + 2], h[i + 3]]);
    assert_eq!(&h[0..4], b"RIFF");
    assert_eq!(u32_at(4), u32::MAX, "endless RIFF size");
    assert_eq!(&h[8..16], b"WAVEfmt ");
    assert_eq!(u32_at(16), 16, "fmt chunk size");
    assert_eq!(u16_at(20), 1, "PCM");
    assert_eq!(u16_at(22), channels);
    assert_eq!(u32_at(24), rate);
    assert_eq!(u32_at(28), rate * u32::from(channels) * 2, "byte rate");
    assert_eq!(u16_at(32), channels * 2, "block align");
    assert_eq!(u16_at(34), 16, "bits per sample");
    assert_eq!(&h[36..40], b"data");
    assert_eq!(u32_at(40), u32::MAX, "endless data size");
}

fn assert_tones(pcm: &[i16], what: &str) {
    let f = dominant_frequencies(pcm, RATE, 2);
    assert!(
        f.len() == 2 && (f[0] - TONES[0]).abs() <= 2.0 && (f[1] - TONES[1]).abs() <= 2.0,
        "{what}: tones {f:?}, want {TONES:?}"
    );
}

#[test]
fn listen_streams_live_wav_to_many_listeners_without_stalling_the_stream() {
    let sink = WsSink::start();
    let (_src, src) = start_testsrc(&[]);
    let node = Node::start(None);
    create(&node, "cam1", &src, &sink);
    wait_live(&node, "cam1");
    let path = "/v1/streams/cam1/listen";

    // (a) One listener: headers, WAV header, the stream's tones at real-time pace.
    let mut a = Listen::open(node.addr(), path);
    let opened = Instant::now();
    assert_eq!(a.status, 200);
    assert_eq!(a.header("content-type"), Some("audio/wav"));
    assert_eq!(a.header("cache-control"), Some("no-store"));
    a.read_for(Duration::from_secs(3));
    let elapsed = opened.elapsed().as_secs_f64();
    let pcm = a.pcm();
    assert_tones(&pcm, "listener");
    let ratio = (pcm.len() * 2) as f64 / BYTES_PER_SEC / elapsed;
    assert!(
        (0.9..=1.1).contains(&ratio),
        "{} samples in {elapsed:.2} s: pace {ratio:.3}",
        pcm.len()
    );
    drop(a);

    // (b) Two listeners at once both get the whole live audio.
    let mut b1 = Listen::open(node.addr(), path);
    let mut b2 = Listen::open(node.addr(), path);
    let opened = Instant::now();
    let t1 = std::thread::spawn(move || {
        b1.read_for(Duration::from_secs(3));
        b1
    });
    b2.read_for(Duration::from_secs(3));
    let b1 = t1.join().expect("listener thread");
    let elapsed = opened.elapsed().as_secs_f64();
    for (name, l) in [("b1", &b1), ("b2", &b2)] {
        let pcm = l.pcm();
        assert_tones(&pcm, name);
        let ratio = (pcm.len() * 2) as f64 / BYTES_PER_SEC / elapsed;
        assert!((0.85..=1.1).contains(&ratio), "{name}: pace {ratio:.3}");
    }
    drop((b1, b2));

    // (c) A listener that never reads for 5 s: the consumer keeps its real-time pace and the
    // stream stays live; afterwards the listener still gets fresh audio.
    let stalled = Listen::request(node.addr(), path);
    std::thread::sleep(Duration::from_millis(300));
    let from = Instant::now();
    while from.elapsed() < Duration::from_secs(5) {
        assert_eq!(node.get("cam1")["state"], "live", "stream not live");
        std::thread::sleep(Duration::from_millis(250));
    }
    let to = Instant::now();
    let by_stream = decode_seed_by_stream(&sink.messages());
    let (_, metas) = &by_stream["cam1"];
    let received: usize = metas
        .iter()
        .filter(|m| m.at > from && m.at <= to)
        .map(|m| m.samples)
        .sum();
    let pace = received as f64 / f64::from(RATE) / (to - from).as_secs_f64();
    assert!(
        (0.9..=1.1).contains(&pace),
        "consumer pace {pace:.3} while a listener stalled"
    );
    let mut stalled = Listen::read_head(stalled);
    assert_eq!(stalled.status, 200);
    stalled.read_for(Duration::from_millis(300));
    let backlog = stalled.body.len();
    stalled.read_for(Duration::from_secs(2));
    let fresh = stalled.body.len() - backlog;
    assert!(
        fresh as f64 >= 0.8 * 2.0 * BYTES_PER_SEC,
        "stalled listener got {fresh} fresh bytes in 2 s after resuming"
    );
    assert_tones(&stalled.pcm(), "stalled listener");
    drop(stalled);

    // (d) Unknown stream: 404 problem.
    assert_problem(
        &node.call("GET", "/v1/streams/nope/listen", b"", None),
        404,
        None,
    );

    // The response ends when the stream goes away.
    let mut last = Listen::open(node.addr(), path);
    last.read_for(Duration::from_millis(500));
    assert!(last.body.len() > 44, "no audio before DELETE");
    assert_eq!(
        node.call("DELETE", "/v1/streams/cam1", b"", None).status,
        204
    );
    last.read_for(Duration::from_secs(10));
    assert!(last.ended, "listen response still open after DELETE");
}

#[test]
fn listen_takes_the_api_token_as_header_or_query() {
    let sink = WsSink::start();
    let (_src, src) = start_testsrc(&[]);
    let node = Node::start(Some("s3cret/+token"));
    create(&node, "cam2", &src, &sink);
    wait_live(&node, "cam2");

    // (e) Without a token: 401; a wrong one: 401; `?token=` (URL-encoded) or the header: 200.
    assert_problem(&node.anonymous("GET", "/v1/streams/cam2/listen"), 401, None);
    assert_problem(
        &node.anonymous("GET", "/v1/streams/cam2/listen?token=wrong"),
        401,
        None,
    );
    // Only the listen route takes the token from the query.
    assert_problem(
        &node.anonymous("GET", "/v1/streams/cam2?token=s3cret%2F%2Btoken"),
        401,
        None,
    );
    let mut q = Listen::open(
        node.addr(),
        "/v1/streams/cam2/listen?token=s3cret%2F%2Btoken",
    );
    assert_eq!(q.status, 200);
    assert_eq!(q.header("content-type"), Some("audio/wav"));
    q.read_for(Duration::from_secs(2));
    assert_tones(&q.pcm(), "query-token listener");

    let stream = TcpStream::connect(node.addr()).expect("connect");
    let mut s = stream;
    let req = format!(
        "GET /v1/streams/cam2/listen HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer s3cret/+token\r\n\r\n",
        node.addr()
    );
    s.write_all(req.as_bytes()).expect("send");
    let mut h = Listen::read_head(s);
    assert_eq!(h.status, 200);
    h.read_for(Duration::from_millis(500));
    assert!(h.body.len() > 44);
    // A token in the query never reaches the log.
    assert!(!node.guard.output().contains("s3cret"), "token logged");
}

#[test]
fn listen_follows_the_stream_output_format_through_the_resampler() {
    let sink = WsSink::start();
    let (_src, src) = start_testsrc(&[]);
    let node = Node::start(None);
    // 44.1 kHz is no Opus rate: decoded at 48 kHz, then resampled (the non-pass-through path).
    create_with(
        &node,
        "hifi",
        &src,
        &sink,
        serde_json::json!({"sampleRate": 44_100, "channels": 2}),
    );
    wait_live(&node, "hifi");

    let mut l = Listen::open(node.addr(), "/v1/streams/hifi/listen");
    let opened = Instant::now();
    assert_eq!(l.status, 200);
    l.read_for(Duration::from_secs(2));
    let elapsed = opened.elapsed().as_secs_f64();
    check_wav_header(&l.body[..44], 44_100, 2);
    let stereo = s16le_to_i16(&l.body[44..]);
    let ratio = stereo.len() as f64 / 2.0 / 44_100.0 / elapsed;
    assert!((0.9..=1.1).contains(&ratio), "pace {ratio:.3}");
    // Interleaved L/R: the left channel carries `freq`, the right `freq_r`.
    let (left, right) = deinterleave(&stereo);
    for (name, ch, want) in [("left", &left, TONES[0]), ("right", &right, TONES[1])] {
        let f = dominant_frequencies(ch, 44_100, 1);
        assert!(
            f.len() == 1 && (f[0] - want).abs() <= 2.0,
            "{name}: {f:?}, want {want}"
        );
    }
}

#[test]
fn listen_on_a_node_that_does_not_run_the_stream_forwards_the_owners_audio() {
    let redis = common::redis::RedisServer::start();
    let sink = WsSink::start();
    let (_src, src) = start_testsrc(&[]);
    let token = "cluster-token";
    let env = [
        ("WHEP_BRIDGE_REDIS_URL", redis.url()),
        ("WHEP_BRIDGE_REDIS_PREFIX", "listen-test".to_owned()),
    ];
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let a = Node::start_as("node-a", Some(token), &env);
    let b = Node::start_as("node-b", Some(token), &env);
    create(&a, "far", &src, &sink);
    wait_live(&a, "far");
    let owner = a.get("far")["owner"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let other = if owner == "node-a" { &b } else { &a };

    // The node that does not run it streams the owner's audio through, token and all.
    let mut l = Listen::open(
        other.addr(),
        &format!("/v1/streams/far/listen?token={token}"),
    );
    assert_eq!(l.status, 200);
    assert_eq!(l.header("content-type"), Some("audio/wav"));
    let started = Instant::now();
    l.read_for(Duration::from_secs(3));
    let secs = started.elapsed().as_secs_f64();
    let pcm = l.pcm();
    assert_tones(&pcm, "forwarded listener");
    let got = pcm.len() as f64 * 2.0 / BYTES_PER_SEC;
    assert!(
        got > secs - 0.6 && got < secs + 0.6,
        "{got:.2} s of audio in {secs:.2} s"
    );
    // Without the token the forwarding node refuses it itself.
    assert_problem(&other.anonymous("GET", "/v1/streams/far/listen"), 401, None);
    // An unknown stream is a 404 on any node.
    assert_problem(
        &other.call("GET", "/v1/streams/nope/listen", b"", None),
        404,
        Some("stmId"),
    );
}
