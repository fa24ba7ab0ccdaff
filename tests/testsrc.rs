//! End-to-end tests of the synthetic WHEP source: a webrtc-rs receiving peer built here (not
//! the crate's own receiver, so the source is checked against an independent client) offers
//! recvonly audio over HTTP, and the test inspects the RTP and the decoded audio.
//! Loopback only; every test is bounded in time.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch};
use webrtc::api::interceptor_registry::register_default_interceptors;
use webrtc::api::media_engine::MediaEngine;
use webrtc::api::setting_engine::SettingEngine;
use webrtc::api::APIBuilder;
use webrtc::ice::mdns::MulticastDnsMode;
use webrtc::ice::network_type::NetworkType;
use webrtc::interceptor::registry::Registry;
use webrtc::peer_connection::configuration::RTCConfiguration;
use webrtc::peer_connection::peer_connection_state::RTCPeerConnectionState;
use webrtc::peer_connection::sdp::session_description::RTCSessionDescription;
use webrtc::peer_connection::RTCPeerConnection;
use webrtc::rtp_transceiver::rtp_codec::RTPCodecType;
use webrtc::rtp_transceiver::rtp_transceiver_direction::RTCRtpTransceiverDirection;
use webrtc::rtp_transceiver::RTCRtpTransceiverInit;
use whep_bridge::testsrc::{TestSource, TestSrcArgs};

const TEST_LIMIT: Duration = Duration::from_secs(40);

// ---------------------------------------------------------------------------------------
// A minimal HTTP client that can tell "closed without a response" from a response.

#[derive(Debug)]
struct Resp {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Resp {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Sends one request with `Connection: close`; `None` if the server closed the connection
/// without writing a single byte (the SRS way of reporting errors).
async fn http(addr: SocketAddr, method: &str, target: &str, sdp: Option<&str>) -> Option<Resp> {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let mut req = format!("{method} {target} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    if let Some(body) = sdp {
        req.push_str(&format!(
            "Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        ));
    } else {
        req.push_str("\r\n");
    }
    stream.write_all(req.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    // A reset counts as "closed without response" too.
    let _ = tokio::time::timeout(Duration::from_secs(15), stream.read_to_end(&mut raw))
        .await
        .expect("server neither answered nor closed");
    if raw.is_empty() {
        return None;
    }
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut resp = httparse::Response::new(&mut headers);
    let len = match resp.parse(&raw).unwrap() {
        httparse::Status::Complete(n) => n,
        httparse::Status::Partial => panic!("truncated response"),
    };
    Some(Resp {
        status: resp.code.unwrap(),
        headers: resp
            .headers
            .iter()
            .map(|h| {
                (
                    h.name.to_owned(),
                    String::from_utf8_lossy(h.value).into_owned(),
                )
            })
            .collect(),
        body: raw[len..].to_vec(),
    })
}

// ---------------------------------------------------------------------------------------
// An independent receiving peer: default codecs and interceptors, like a browser.

#[derive(Debug, Clone)]
struct Rtp {
    seq: u16,
    ts: u32,
    pt: u8,
    ssrc: u32,
    payload: bytes::Bytes,
    at: Instant,
}

struct Client {
    pc: Arc<RTCPeerConnection>,
    rtp: mpsc::UnboundedReceiver<Rtp>,
    state: watch::Receiver<RTCPeerConnectionState>,
    offer: String,
}

async fn client() -> Client {
    let mut media = MediaEngine::default();
    media.register_default_codecs().unwrap();
    let registry = register_default_interceptors(Registry::new(), &mut media).unwrap();
    let mut settings = SettingEngine::default();
    settings.set_include_loopback_candidate(true);
    settings.set_ip_filter(Box::new(|ip| ip == IpAddr::V4(Ipv4Addr::LOCALHOST)));
    settings.set_network_types(vec![NetworkType::Udp4]);
    settings.set_ice_multicast_dns_mode(MulticastDnsMode::Disabled);
    let api = APIBuilder::new()
        .with_media_engine(media)
        .with_interceptor_registry(registry)
        .with_setting_engine(settings)
        .build();
    let pc = Arc::new(
        api.new_peer_connection(RTCConfiguration::default())
            .await
            .unwrap(),
    );
    let (state_tx, state) = watch::channel(RTCPeerConnectionState::New);
    pc.on_peer_connection_state_change(Box::new(move |s| {
        state_tx.send_replace(s);
        Box::pin(async {})
    }));
    let (tx, rtp) = mpsc::unbounded_channel();
    pc.on_track(Box::new(move |track, _, _| {
        let tx = tx.clone();
        tokio::spawn(async move {
            while let Ok((p, _)) = track.read_rtp().await {
                let _ = tx.send(Rtp {
                    seq: p.header.sequence_number,
                    ts: p.header.timestamp,
                    pt: p.header.payload_type,
                    ssrc: p.header.ssrc,
                    payload: p.payload,
                    at: Instant::now(),
                });
            }
        });
        Box::pin(async {})
    }));
    pc.add_transceiver_from_kind(
        RTPCodecType::Audio,
        Some(RTCRtpTransceiverInit {
            direction: RTCRtpTransceiverDirection::Recvonly,
            send_encodings: vec![],
        }),
    )
    .await
    .unwrap();
    let offer = pc.create_offer(None).await.unwrap();
    let mut gathered = pc.gathering_complete_promise().await;
    pc.set_local_description(offer).await.unwrap();
    let _ = tokio::time::timeout(Duration::from_secs(5), gathered.recv()).await;
    let offer = pc.local_description().await.unwrap().sdp;
    Client {
        pc,
        rtp,
        state,
        offer,
    }
}

impl Client {
    async fn accept(&self, answer: &[u8]) {
        let sdp = String::from_utf8(answer.to_vec()).unwrap();
        self.pc
            .set_remote_description(RTCSessionDescription::answer(sdp).unwrap())
            .await
            .unwrap();
    }

    async fn wait_connected(&mut self) {
        tokio::time::timeout(
            Duration::from_secs(10),
            self.state
                .wait_for(|s| *s == RTCPeerConnectionState::Connected),
        )
        .await
        .expect("not connected within 10 s")
        .unwrap();
    }

    fn connected(&self) -> bool {
        *self.state.borrow() == RTCPeerConnectionState::Connected
    }

    /// Packets arriving within `d`.
    async fn collect_for(&mut self, d: Duration) -> Vec<Rtp> {
        let end = tokio::time::Instant::now() + d;
        let mut out = Vec::new();
        while let Ok(Some(p)) = tokio::time::timeout_at(end, self.rtp.recv()).await {
            out.push(p);
        }
        out
    }

    async fn first_packet(&mut self, within: Duration) -> Rtp {
        tokio::time::timeout(within, self.rtp.recv())
            .await
            .expect("no RTP in time")
            .expect("track ended")
    }
}

/// Starts a source on a free loopback port with extra flags.
async fn source(extra: &[&str]) -> TestSource {
    #[derive(clap::Parser)]
    struct Cli {
        #[command(flatten)]
        args: TestSrcArgs,
    }
    let mut argv = vec!["testsrc", "--listen=127.0.0.1:0"];
    argv.extend_from_slice(extra);
    let args = <Cli as clap::Parser>::try_parse_from(argv).unwrap().args;
    TestSource::start(args).await.unwrap()
}

/// Offers, expects 201, applies the answer and waits until connected.
async fn play(src: &TestSource, target: &str) -> (Client, Resp) {
    let mut c = client().await;
    let resp = http(src.local_addr(), "POST", target, Some(&c.offer))
        .await
        .expect("closed without response");
    assert_eq!(resp.status, 201, "{}", String::from_utf8_lossy(&resp.body));
    c.accept(&resp.body).await;
    c.wait_connected().await;
    (c, resp)
}

// ---------------------------------------------------------------------------------------
// Audio analysis.

fn decode_stereo(pkts: &[Rtp]) -> Vec<i16> {
    let mut dec = opus::Decoder::new(48_000, opus::Channels::Stereo).unwrap();
    let mut pcm = Vec::new();
    let mut frame = vec![0i16; 5_760 * 2];
    for p in pkts {
        let n = dec.decode(&p.payload, &mut frame, false).unwrap();
        assert_eq!(n, 960, "20 ms per packet");
        pcm.extend_from_slice(&frame[..n * 2]);
    }
    pcm
}

fn channel(pcm: &[i16], ch: usize) -> Vec<f64> {
    pcm.iter()
        .skip(ch)
        .step_by(2)
        .map(|&s| f64::from(s))
        .collect()
}

fn zero_crossing_freq(x: &[f64]) -> f64 {
    let n = x
        .windows(2)
        .filter(|w| (w[0] < 0.0) != (w[1] < 0.0))
        .count();
    n as f64 / 2.0 / (x.len() as f64 / 48_000.0)
}

/// Share of the signal's power at `freq` (Goertzel): about 1 for a pure tone at `freq`.
fn tone_share(x: &[f64], freq: f64) -> f64 {
    let coeff = 2.0 * (std::f64::consts::TAU * freq / 48_000.0).cos();
    let (mut s1, mut s2) = (0.0, 0.0);
    for &v in x {
        let s0 = v + coeff * s1 - s2;
        s2 = s1;
        s1 = s0;
    }
    let power = s1 * s1 + s2 * s2 - coeff * s1 * s2;
    let energy: f64 = x.iter().map(|v| v * v).sum();
    power / (energy * x.len() as f64 / 2.0)
}

fn seqs(pkts: &[Rtp]) -> Vec<u16> {
    pkts.iter().map(|p| p.seq).collect()
}

// ---------------------------------------------------------------------------------------

/// 201 + Location, RTP at wall-clock rate from seq 0 / ts 0, stereo tones as asked,
/// /stats, and DELETE stopping the flow.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plays_stereo_tones_and_delete_stops_them() {
    tokio::time::timeout(TEST_LIMIT, async {
        let src = source(&[]).await;
        let (mut c, resp) = play(&src, "/whep/s1?freq=437&freq_r=1013").await;
        assert_eq!(resp.header("content-type"), Some("application/sdp"));
        let location = resp.header("location").unwrap().to_owned();
        assert!(location.starts_with("/whep/s1/sessions/"), "{location}");
        let answer = String::from_utf8_lossy(&resp.body).into_owned();
        assert!(answer.contains("a=sendonly"), "{answer}");
        assert!(
            answer.contains("a=candidate:"),
            "complete answer, not trickle"
        );
        assert_eq!(src.sessions(), 1);

        let first = c.first_packet(Duration::from_secs(5)).await;
        assert_eq!((first.seq, first.ts), (0, 0), "SRS-like start");
        assert_eq!(first.pt, 111);
        let mut pkts = vec![first.clone()];
        pkts.extend(c.collect_for(Duration::from_secs(2)).await);
        let in_two_secs = pkts
            .iter()
            .filter(|p| p.at.duration_since(first.at) < Duration::from_secs(2))
            .count();
        assert!(
            (97..=103).contains(&in_two_secs),
            "{in_two_secs} packets in 2 s"
        );
        for (i, p) in pkts.iter().enumerate() {
            assert_eq!(p.seq, i as u16);
            assert_eq!(p.ts, i as u32 * 960);
            assert_eq!(p.ssrc, first.ssrc);
        }

        let pcm = decode_stereo(&pkts);
        let (l, r) = (channel(&pcm[9_600..], 0), channel(&pcm[9_600..], 1));
        let (fl, fr) = (zero_crossing_freq(&l), zero_crossing_freq(&r));
        assert!((fl - 437.0).abs() < 2.0, "left {fl} Hz");
        assert!((fr - 1013.0).abs() < 2.0, "right {fr} Hz");
        assert!(tone_share(&l, 437.0) > 0.95 && tone_share(&l, 1013.0) < 0.01);
        assert!(tone_share(&r, 1013.0) > 0.95 && tone_share(&r, 437.0) < 0.01);

        let stats = http(src.local_addr(), "GET", "/stats", None).await.unwrap();
        assert_eq!(stats.status, 200);
        let json: serde_json::Value = serde_json::from_slice(&stats.body).unwrap();
        assert_eq!(json["sessions"][0]["name"], "s1");
        assert_eq!(json["sessions"][0]["phase"], "sending");
        assert!(json["sessions"][0]["packetsSent"].as_u64().unwrap() >= 100);

        let del = http(src.local_addr(), "DELETE", &location, None)
            .await
            .unwrap();
        assert_eq!(del.status, 200);
        assert_eq!(src.sessions(), 0);
        // Whatever was in flight arrives within a few frames, then nothing.
        c.collect_for(Duration::from_millis(300)).await;
        assert!(c.collect_for(Duration::from_secs(1)).await.is_empty());
        let again = http(src.local_addr(), "DELETE", &location, None)
            .await
            .unwrap();
        assert_eq!(again.status, 404);

        c.pc.close().await.unwrap();
        src.shutdown().await;
    })
    .await
    .unwrap();
}

/// The SRS endpoint answers with SRS's relative delete URL, and DELETE on it works.
#[tokio::test]
async fn srs_endpoint_returns_srs_location() {
    tokio::time::timeout(TEST_LIMIT, async {
        let src = source(&[]).await;
        let (mut c, resp) = play(&src, "/rtc/v1/whep/?app=live&stream=cam&freq=500").await;
        let location = resp.header("location").unwrap().to_owned();
        assert!(
            location.starts_with("/rtc/v1/whip/?action=delete&token="),
            "{location}"
        );
        assert!(location.ends_with("&app=live&stream=cam"), "{location}");
        c.first_packet(Duration::from_secs(5)).await;
        let del = http(src.local_addr(), "DELETE", &location, None)
            .await
            .unwrap();
        assert_eq!(del.status, 200);
        assert_eq!(src.sessions(), 0);
        c.pc.close().await.unwrap();
        src.shutdown().await;
    })
    .await
    .unwrap();
}

/// Plain HTTP errors by default; with --srs-errors every error is a closed connection.
#[tokio::test]
async fn error_modes() {
    tokio::time::timeout(TEST_LIMIT, async {
        let plain = source(&["--streams=only"]).await;
        let a = plain.local_addr();
        assert_eq!(http(a, "GET", "/healthz", None).await.unwrap().status, 200);
        assert_eq!(http(a, "GET", "/nope", None).await.unwrap().status, 404);
        assert_eq!(
            http(a, "POST", "/whep/other", Some("v=0"))
                .await
                .unwrap()
                .status,
            404
        );
        let bad = http(a, "POST", "/whep/only", Some("v=0\r\nm=audio x\r\n"))
            .await
            .unwrap();
        assert_eq!(bad.status, 400);
        let bad = http(a, "POST", "/whep/only?loss=500", Some("m=audio"))
            .await
            .unwrap();
        assert_eq!(bad.status, 400);
        assert!(String::from_utf8_lossy(&bad.body).contains("loss"));
        assert_eq!(plain.sessions(), 0);
        plain.shutdown().await;

        let srs = source(&["--srs-errors", "--streams=only"]).await;
        let a = srs.local_addr();
        assert_eq!(http(a, "GET", "/healthz", None).await.unwrap().status, 200);
        assert!(http(a, "GET", "/nope", None).await.is_none());
        assert!(http(a, "POST", "/whep/other", Some("v=0")).await.is_none());
        assert!(http(a, "POST", "/whep/only", Some("garbage"))
            .await
            .is_none());
        assert!(http(a, "DELETE", "/whep/only/sessions/nosuch", None)
            .await
            .is_none());
        // A valid offer still works in SRS mode.
        let (c, _) = play(&srs, "/rtc/v1/whep/?app=live&stream=only").await;
        c.pc.close().await.unwrap();
        srs.shutdown().await;
    })
    .await
    .unwrap();
}

/// The Opus payload type of the answer follows the offer's.
#[tokio::test]
async fn answer_uses_the_offered_payload_type() {
    tokio::time::timeout(TEST_LIMIT, async {
        let src = source(&[]).await;
        let c = client().await;
        let offer = c
            .offer
            .replace("a=rtpmap:111 ", "a=rtpmap:96 ")
            .replace("a=fmtp:111 ", "a=fmtp:96 ")
            .replace(" 111 ", " 96 ")
            .replace(" 111\r\n", " 96\r\n");
        let resp = http(src.local_addr(), "POST", "/whep/pt", Some(&offer))
            .await
            .unwrap();
        assert_eq!(resp.status, 201);
        let answer = String::from_utf8_lossy(&resp.body);
        assert!(
            answer.to_lowercase().contains("a=rtpmap:96 opus/48000/2"),
            "{answer}"
        );
        assert!(!answer.contains("a=rtpmap:111"), "{answer}");
        c.pc.close().await.unwrap();
        src.shutdown().await;
    })
    .await
    .unwrap();
}

/// silence_after: RTP stops, the connection stays up; silence_for: it resumes with the
/// same SSRC, a sequence jump and timestamps that kept running.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silence_then_republish() {
    tokio::time::timeout(TEST_LIMIT, async {
        let src = source(&[]).await;
        let (mut c, _) = play(&src, "/whep/s?silence_after=0.6&silence_for=1.4").await;
        let first = c.first_packet(Duration::from_secs(5)).await;
        let mut pkts = vec![first];
        // 0.6 s of audio, then 1.4 s of nothing, then audio again.
        pkts.extend(c.collect_for(Duration::from_millis(900)).await);
        assert_eq!(seqs(&pkts), (0..30).collect::<Vec<u16>>());
        assert!(c.collect_for(Duration::from_millis(600)).await.is_empty());
        assert!(c.connected(), "silence keeps the connection up");
        let stats = src.stats();
        assert_eq!(stats.sessions[0].phase, whep_bridge::testsrc::Phase::Silent);
        let resumed = c.first_packet(Duration::from_secs(2)).await;
        assert_eq!(resumed.seq, 30 + 5_000);
        assert_eq!(resumed.ssrc, pkts[0].ssrc);
        assert_eq!(
            resumed.ts,
            100 * 960,
            "the media clock ran through the silence"
        );
        c.pc.close().await.unwrap();
        src.shutdown().await;
    })
    .await
    .unwrap();
}

/// seq_jump_every: the sequence jumps while timestamps stay continuous.
#[tokio::test]
async fn periodic_sequence_jump_is_visible() {
    tokio::time::timeout(TEST_LIMIT, async {
        let src = source(&["--seq-jump=777"]).await;
        let (mut c, _) = play(&src, "/whep/j?seq_jump_every=0.4&start_seq=65530").await;
        let first = c.first_packet(Duration::from_secs(5)).await;
        let mut pkts = vec![first];
        pkts.extend(c.collect_for(Duration::from_millis(600)).await);
        assert!(pkts.len() >= 25);
        assert_eq!(pkts[0].seq, 65_530);
        assert_eq!(pkts[19].seq, 65_530u16.wrapping_add(19));
        assert_eq!(pkts[20].seq, 65_530u16.wrapping_add(20 + 777));
        for (i, p) in pkts.iter().enumerate() {
            assert_eq!(p.ts, i as u32 * 960);
        }
        c.pc.close().await.unwrap();
        src.shutdown().await;
    })
    .await
    .unwrap();
}

/// delay_start: 201 at once, RTP only after the delay; drop_after: the peer connection is
/// closed by the source and the session disappears.
#[tokio::test]
async fn delayed_start_and_abrupt_drop() {
    tokio::time::timeout(TEST_LIMIT, async {
        let src = source(&[]).await;
        let posted = Instant::now();
        let (mut c, _) = play(&src, "/whep/d?delay_start=1&drop_after=0.5").await;
        let first = c.first_packet(Duration::from_secs(5)).await;
        let waited = first.at.duration_since(posted);
        assert!(
            waited >= Duration::from_millis(950),
            "first RTP after {waited:?}"
        );
        assert_eq!(first.seq, 0);
        let rest = c.collect_for(Duration::from_millis(800)).await;
        assert!(
            (20..=26).contains(&(rest.len() + 1)),
            "{} packets",
            rest.len() + 1
        );
        tokio::time::timeout(
            Duration::from_secs(15),
            c.state.wait_for(|s| {
                matches!(
                    s,
                    RTCPeerConnectionState::Closed
                        | RTCPeerConnectionState::Failed
                        | RTCPeerConnectionState::Disconnected
                )
            }),
        )
        .await
        .expect("client never noticed the drop")
        .unwrap();
        assert_eq!(src.sessions(), 0);
        c.pc.close().await.unwrap();
        src.shutdown().await;
    })
    .await
    .unwrap();
}

/// --max-sessions: the next offer gets 503 with Retry-After; /stats lists what runs.
#[tokio::test]
async fn full_server_says_retry_later() {
    tokio::time::timeout(TEST_LIMIT, async {
        let src = source(&["--max-sessions=1"]).await;
        let (c, _) = play(&src, "/whep/a").await;
        let c2 = client().await;
        let resp = http(src.local_addr(), "POST", "/whep/b", Some(&c2.offer))
            .await
            .unwrap();
        assert_eq!(resp.status, 503);
        assert!(resp.header("retry-after").is_some());
        assert_eq!(src.sessions(), 1);
        c.pc.close().await.unwrap();
        c2.pc.close().await.unwrap();
        src.shutdown().await;
    })
    .await
    .unwrap();
}

/// Many sessions of the same tones share one encoder; shutdown ends them all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_share_an_encoder_and_shutdown_ends_them() {
    tokio::time::timeout(TEST_LIMIT, async {
        let src = source(&[]).await;
        let mut clients = Vec::new();
        for i in 0..4 {
            let (mut c, _) = play(&src, &format!("/whep/m{i}")).await;
            c.first_packet(Duration::from_secs(5)).await;
            clients.push(c);
        }
        let stats = src.stats();
        assert_eq!(stats.sessions.len(), 4);
        assert_eq!(stats.encoders, 1);
        src.shutdown().await;
        for c in &mut clients {
            c.collect_for(Duration::from_millis(200)).await;
        }
        for c in &mut clients {
            assert!(c.collect_for(Duration::from_millis(300)).await.is_empty());
            c.pc.close().await.unwrap();
        }
    })
    .await
    .unwrap();
}
