//! The testsrc control routes that make the source unreachable for one cluster node:
//! `POST /control/block?agent=SUB` drops the live sessions whose `User-Agent` contains SUB and
//! refuses their new offers, other clients keep playing, `POST /control/unblock` lifts it.
//!
//! The source runs as the real `whep-bridge testsrc` process; the player is the crate's own
//! WebRTC receiver ([`ReceiveSession`]) with offers POSTed over raw TCP, so a refusal by
//! closing the connection (`--srs-errors`) can be told from an HTTP answer. Loopback only;
//! every wait is bounded.

mod common;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use webrtc::api::API;
use whep_bridge::config::RtcConfig;
use whep_bridge::pipeline::packet::RtpPacket;
use whep_bridge::rtc::engine::build_api;
use whep_bridge::rtc::receiver::{ReceiveSession, TransportState};

use common::net::{http_request_with, HttpResponse};
use common::testsrc::start_testsrc;
use common::ChildGuard;

const TEST_LIMIT: Duration = Duration::from_secs(90);
const NODE_A: &str = "x (node node-a)";
const NODE_B: &str = "x (node node-b)";
/// How soon a blocked node's RTP must stop.
const DROP_WITHIN: Duration = Duration::from_secs(2);

async fn bounded<F: std::future::Future>(fut: F) -> F::Output {
    tokio::time::timeout(TEST_LIMIT, fut)
        .await
        .expect("test exceeded its time limit")
}

/// `whep-bridge testsrc` with `extra` flags, started off the runtime's threads.
async fn testsrc(extra: &'static [&'static str]) -> (ChildGuard, String) {
    tokio::task::spawn_blocking(move || start_testsrc(extra))
        .await
        .expect("start testsrc")
}

fn addr_of(base: &str) -> SocketAddr {
    base.trim_start_matches("http://").parse().expect("address")
}

/// A control request (or any bodiless one) through the dependency-free test client.
async fn control(base: &str, method: &str, path: &str) -> HttpResponse {
    let (method, url) = (method.to_owned(), format!("{base}{path}"));
    tokio::task::spawn_blocking(move || {
        http_request_with(&method, &url, &[], &[], Duration::from_secs(5))
    })
    .await
    .expect("control task")
    .unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// The parsed JSON of a `200` control answer.
async fn control_ok(base: &str, path: &str) -> serde_json::Value {
    let resp = control(base, "POST", path).await;
    assert_eq!(resp.status, 200, "{path}: {}", resp.body_text());
    assert_eq!(resp.header("content-type"), Some("application/json"));
    serde_json::from_slice(&resp.body).expect("control JSON")
}

/// The `userAgent` of every session in `/stats`.
async fn stats_agents(base: &str) -> Vec<String> {
    let resp = control(base, "GET", "/stats").await;
    let json: serde_json::Value = serde_json::from_slice(&resp.body).expect("stats JSON");
    let mut agents: Vec<String> = json["sessions"]
        .as_array()
        .expect("sessions")
        .iter()
        .map(|s| s["userAgent"].as_str().unwrap_or("-").to_owned())
        .collect();
    agents.sort();
    agents
}

/// An HTTP answer, or `None` when the server closed the connection without writing a byte
/// (the SRS way of reporting errors).
#[derive(Debug)]
struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// POSTs an SDP offer with this `User-Agent` over a fresh connection.
async fn post_offer(addr: SocketAddr, agent: &str, sdp: &str) -> Option<Answer> {
    let mut stream = TcpStream::connect(addr).await.expect("connect testsrc");
    let req = format!(
        "POST /whep/s1 HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nUser-Agent: {agent}\r\n\
         Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{sdp}",
        sdp.len()
    );
    stream.write_all(req.as_bytes()).await.expect("send offer");
    let mut raw = Vec::new();
    // A reset counts as "closed without a response" too.
    let _ = tokio::time::timeout(Duration::from_secs(15), stream.read_to_end(&mut raw))
        .await
        .expect("testsrc neither answered nor closed");
    if raw.is_empty() {
        return None;
    }
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut parsed = httparse::Response::new(&mut headers);
    let len = match parsed.parse(&raw).expect("HTTP response") {
        httparse::Status::Complete(n) => n,
        httparse::Status::Partial => panic!("truncated response"),
    };
    Some(Answer {
        status: parsed.code.expect("status"),
        headers: parsed
            .headers
            .iter()
            .map(|h| {
                (
                    h.name.to_owned(),
                    String::from_utf8_lossy(h.value).into_owned(),
                )
            })
            .collect(),
        body: String::from_utf8_lossy(&raw[len..]).into_owned(),
    })
}

/// The WebRTC side of one play: the product's own receiver.
struct Player {
    rtc: ReceiveSession,
    rtp: mpsc::UnboundedReceiver<RtpPacket>,
    state: watch::Receiver<TransportState>,
}

/// What a POST got: a playing session, or the refusal (`None` = closed without response).
enum Played {
    Playing(Player),
    Refused(Option<Answer>),
}

impl Played {
    fn playing(self, who: &str) -> Player {
        match self {
            Self::Playing(p) => p,
            Self::Refused(a) => panic!("{who} was refused: {a:?}"),
        }
    }

    async fn refused(self, who: &str) -> Option<Answer> {
        match self {
            Self::Refused(a) => a,
            Self::Playing(p) => {
                p.rtc.close().await;
                panic!("{who} was not refused")
            }
        }
    }
}

/// Offers as `agent`; on 201 connects and waits for the first RTP packet.
async fn play(api: &API, addr: SocketAddr, agent: &str) -> Played {
    let (tx, rtp) = mpsc::unbounded_channel();
    let sink = Box::new(move |p: RtpPacket| {
        let _ = tx.send(p);
    });
    let (rtc, offer) = ReceiveSession::offer(api, &[], Duration::from_secs(5), sink)
        .await
        .expect("offer");
    let answer = match post_offer(addr, agent, &offer).await {
        Some(a) if a.status == 201 => a,
        refused => {
            rtc.close().await;
            return Played::Refused(refused);
        }
    };
    rtc.apply_answer(answer.body).await.expect("apply answer");
    let mut state = rtc.state();
    tokio::time::timeout(
        Duration::from_secs(10),
        state.wait_for(|s| *s == TransportState::Connected),
    )
    .await
    .unwrap_or_else(|_| panic!("{agent}: not connected within 10 s"))
    .expect("state channel");
    let mut player = Player { rtc, rtp, state };
    player.expect_flowing(agent).await;
    Played::Playing(player)
}

impl Player {
    /// At least 40 consecutive packets (20 ms each) within about a second: media is flowing.
    async fn expect_flowing(&mut self, who: &str) {
        let end = Instant::now() + Duration::from_millis(1_500);
        let mut seqs = Vec::new();
        while seqs.len() < 40 {
            match tokio::time::timeout_at(end, self.rtp.recv()).await {
                Ok(Some(p)) => seqs.push(p.seq),
                _ => panic!("{who}: only {} RTP packets in 1.5 s", seqs.len()),
            }
        }
        for pair in seqs.windows(2) {
            assert_eq!(pair[1], pair[0].wrapping_add(1), "{who}: gap in {seqs:?}");
        }
    }

    /// RTP ends before `deadline` and stays off for a further second.
    async fn expect_stopped_by(&mut self, deadline: Instant, who: &str) {
        let quiet = Duration::from_millis(300);
        // In-flight packets may still land, but not past the deadline; the loop ends once
        // it has been quiet for a while, or the track ended.
        while let Ok(Some(_)) = tokio::time::timeout(quiet, self.rtp.recv()).await {
            assert!(
                Instant::now() < deadline,
                "{who}: RTP still flowing {DROP_WITHIN:?} after the block"
            );
        }
        assert!(
            Instant::now() <= deadline + quiet,
            "{who}: stopped too late"
        );
        let late = tokio::time::timeout(Duration::from_secs(1), self.rtp.recv()).await;
        assert!(
            !matches!(late, Ok(Some(_))),
            "{who}: RTP resumed after the drop"
        );
    }

    /// The transport leaves `Connected` within `within` (the source closed it abruptly).
    async fn expect_transport_gone(&mut self, within: Duration, who: &str) {
        tokio::time::timeout(
            within,
            self.state.wait_for(|s| {
                matches!(
                    s,
                    TransportState::Closed | TransportState::Failed | TransportState::Disconnected
                )
            }),
        )
        .await
        .unwrap_or_else(|_| panic!("{who}: transport still up {within:?} after the drop"))
        .expect("state channel");
    }
}

fn loopback_api() -> API {
    build_api(&RtcConfig {
        allowed_ips: vec![IpAddr::V4(Ipv4Addr::LOCALHOST)],
        ..RtcConfig::default()
    })
    .expect("WebRTC API")
}

/// Block node-a: its live session is dropped within 2 s, its next offer is refused with a
/// plain 503 and no Retry-After, node-b keeps playing and can start new sessions; after
/// unblock node-a plays again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blocked_agent_is_dropped_and_refused_until_unblocked() {
    bounded(async {
        let (_src, base) = testsrc(&[]).await;
        let addr = addr_of(&base);
        let api = loopback_api();

        let mut a = play(&api, addr, NODE_A).await.playing("node-a");
        let mut b = play(&api, addr, NODE_B).await.playing("node-b");
        assert_eq!(stats_agents(&base).await, vec![NODE_A, NODE_B]);

        let blocked = control_ok(&base, "/control/block?agent=node-a").await;
        let blocked_at = Instant::now();
        assert_eq!(
            blocked,
            serde_json::json!({ "blocked": ["node-a"], "dropped": 1 })
        );
        // Removed at once, before the answer.
        assert_eq!(stats_agents(&base).await, vec![NODE_B]);

        a.expect_stopped_by(blocked_at + DROP_WITHIN, "node-a")
            .await;
        // Nothing tells the client (as with drop_after): its ICE agent notices the silence
        // after its ~5 s disconnect timeout (measured: 5.05 s).
        a.expect_transport_gone(Duration::from_secs(10), "node-a")
            .await;
        // The other node did not notice a thing.
        b.expect_flowing("node-b after the block").await;
        assert_eq!(*b.state.borrow(), TransportState::Connected);

        let refused = play(&api, addr, NODE_A)
            .await
            .refused("node-a while blocked")
            .await
            .expect("plain mode answers the refusal");
        assert_eq!(refused.status, 503, "{refused:?}");
        assert_eq!(
            refused.header("retry-after"),
            None,
            "waiting would not help"
        );
        assert!(refused.body.contains("node-a"), "{refused:?}");

        let b2 = play(&api, addr, NODE_B).await.playing("second node-b");
        assert_eq!(stats_agents(&base).await, vec![NODE_B, NODE_B]);

        let unblocked = control_ok(&base, "/control/unblock?agent=node-a").await;
        assert_eq!(
            unblocked,
            serde_json::json!({ "blocked": [], "dropped": 0 })
        );
        let a2 = play(&api, addr, NODE_A)
            .await
            .playing("node-a after unblock");
        assert_eq!(stats_agents(&base).await, vec![NODE_A, NODE_B, NODE_B]);

        for p in [a, b, b2, a2] {
            p.rtc.close().await;
        }
    })
    .await;
}

/// With `--srs-errors` a blocked agent's offer gets what SRS gives on errors: a connection
/// closed without a response. `POST /control/unblock` without agent lifts every rule.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn srs_errors_mode_refuses_a_blocked_agent_by_closing() {
    bounded(async {
        let (_src, base) = testsrc(&["--srs-errors"]).await;
        let addr = addr_of(&base);
        let api = loopback_api();

        let mut a = play(&api, addr, NODE_A).await.playing("node-a");
        let blocked = control_ok(&base, "/control/block?agent=node-a").await;
        let blocked_at = Instant::now();
        assert_eq!(blocked["dropped"], 1);
        control_ok(&base, "/control/block?agent=node-c").await;
        a.expect_stopped_by(blocked_at + DROP_WITHIN, "node-a")
            .await;

        let refused = play(&api, addr, NODE_A)
            .await
            .refused("node-a while blocked")
            .await;
        assert!(
            refused.is_none(),
            "SRS mode must close silently: {refused:?}"
        );
        let b = play(&api, addr, NODE_B).await.playing("node-b");

        let all = control_ok(&base, "/control/unblock").await;
        assert_eq!(all, serde_json::json!({ "blocked": [], "dropped": 0 }));
        let a2 = play(&api, addr, NODE_A)
            .await
            .playing("node-a after unblock");

        a.rtc.close().await;
        b.rtc.close().await;
        a2.rtc.close().await;
    })
    .await;
}

/// The rules answer JSON listing what is in effect; bad input is a 400, another method a
/// 405; a block that matches no session drops nothing.
#[tokio::test]
async fn control_routes_answer_json_and_reject_bad_input() {
    bounded(async {
        let (_src, base) = testsrc(&[]).await;

        let first = control_ok(&base, "/control/block?agent=node-b").await;
        assert_eq!(
            first,
            serde_json::json!({ "blocked": ["node-b"], "dropped": 0 })
        );
        control_ok(&base, "/control/block?agent=node-a").await;
        let again = control_ok(&base, "/control/block?agent=node-a").await;
        assert_eq!(again["blocked"], serde_json::json!(["node-a", "node-b"]));
        let one = control_ok(&base, "/control/unblock?agent=node-b").await;
        assert_eq!(one["blocked"], serde_json::json!(["node-a"]));

        for path in [
            "/control/block",
            "/control/block?agent=",
            "/control/unblock?agent=",
        ] {
            let resp = control(&base, "POST", path).await;
            assert_eq!(resp.status, 400, "{path}: {}", resp.body_text());
        }
        for path in ["/control/block?agent=node-a", "/control/unblock"] {
            let resp = control(&base, "GET", path).await;
            assert_eq!(resp.status, 405, "GET {path}");
            assert_eq!(resp.header("allow"), Some("POST"));
        }
        // Bad input changed nothing.
        let all = control_ok(&base, "/control/unblock").await;
        assert_eq!(all, serde_json::json!({ "blocked": [], "dropped": 0 }));
    })
    .await;
}
