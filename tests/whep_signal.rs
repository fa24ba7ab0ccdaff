//! WHEP signalling against real sockets on 127.0.0.1: tiny raw-TCP HTTP servers that answer
//! with canned bytes, including the ways SRS and broken deployments misbehave (closing without
//! a response, HTML pages, endless waits, redirect loops).

use std::{
    future::Future,
    net::SocketAddr,
    time::{Duration, Instant},
};

use awc::error::{ConnectError, SendRequestError};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
    sync::mpsc,
};
use url::Url;
use whep_bridge::{
    config::IceServer,
    whep::{
        sdp::AnswerInfo,
        signal::{delete_resource, http_client, post_offer, srs_play, SignalConfig},
        url::{endpoint_url, srs_play_request},
        WhepError,
    },
};

/// Every test is bounded by this.
const TEST_LIMIT: Duration = Duration::from_secs(20);

async fn bounded<F: Future>(fut: F) -> F::Output {
    tokio::time::timeout(TEST_LIMIT, fut)
        .await
        .expect("test exceeded its time limit")
}

/// A recvonly audio-only offer as the bridge sends it (abridged, content is opaque here).
const OFFER: &str = "v=0\r\n\
o=- 4611731400430051336 2 IN IP4 127.0.0.1\r\n\
s=-\r\n\
t=0 0\r\n\
a=group:BUNDLE 0\r\n\
m=audio 9 UDP/TLS/RTP/SAVPF 111\r\n\
c=IN IP4 0.0.0.0\r\n\
a=ice-ufrag:aBcD\r\n\
a=ice-pwd:0123456789abcdefghijklmn\r\n\
a=fingerprint:sha-256 00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF:00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF\r\n\
a=setup:actpass\r\n\
a=mid:0\r\n\
a=recvonly\r\n\
a=rtcp-mux\r\n\
a=rtpmap:111 opus/48000/2\r\n\
a=fmtp:111 minptime=10;useinbandfec=1\r\n\
a=candidate:1 1 udp 2130706431 127.0.0.1 50000 typ host\r\n\
a=end-of-candidates\r\n";

/// The answer SRS 6 gives to such an offer: ICE-lite, one host candidate, setup:passive.
const SRS_ANSWER: &str = "v=0\r\n\
o=SRS/6.0.155(Hang) 107408542208384 2 IN IP4 0.0.0.0\r\n\
s=SRSPlaySession\r\n\
t=0 0\r\n\
a=ice-lite\r\n\
a=group:BUNDLE 0\r\n\
a=msid-semantic: WMS live/s1\r\n\
m=audio 9 UDP/TLS/RTP/SAVPF 111\r\n\
c=IN IP4 0.0.0.0\r\n\
a=ice-ufrag:9ab82e6x\r\n\
a=ice-pwd:31k30734n7x8s0z3a7m67ku4v0m9iw96\r\n\
a=fingerprint:sha-256 3C:9B:5E:CF:4D:4E:A8:1E:3E:61:1F:57:D6:0E:1B:4E:09:7E:4D:1C:7A:21:88:D8:2D:84:A2:27:1A:0D:2E:59\r\n\
a=setup:passive\r\n\
a=mid:0\r\n\
a=sendonly\r\n\
a=rtcp-mux\r\n\
a=rtcp-rsize\r\n\
a=rtpmap:111 opus/48000/2\r\n\
a=rtcp-fb:111 transport-cc\r\n\
a=fmtp:111 minptime=10;useinbandfec=1\r\n\
a=ssrc:2876160231 cname:k3c14f3e1j0n2ky3\r\n\
a=ssrc:2876160231 msid:live/s1 audio-track\r\n\
a=candidate:0 1 udp 2130706431 127.0.0.1 8000 typ host generation 0\r\n";

/// The `Location` SRS returns for a WHEP session (yes, `whip`, and relative).
const SRS_LOCATION: &str =
    "/rtc/v1/whip/?action=delete&token=7c2d9f&app=live&stream=s1&session=4q6u2k1x:Pz3s";

/// One request as the server saw it.
#[derive(Debug)]
struct Seen {
    method: String,
    target: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Seen {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// What the server does with one connection, after reading the request.
#[derive(Clone)]
enum Act {
    /// Write these bytes, then close.
    Reply(Vec<u8>),
    /// Close (FIN) without writing anything, as SRS does on errors.
    Close,
    /// Abort the connection (RST) without writing anything.
    Reset,
    /// Keep the connection open and never answer.
    Hang,
}

/// A raw-TCP HTTP/1.1 server on 127.0.0.1 that plays `acts` in order, one per connection,
/// repeating the last one forever, and reports every request it reads.
struct Server {
    addr: SocketAddr,
    seen: mpsc::UnboundedReceiver<Seen>,
}

impl Server {
    async fn start(acts: Vec<Act>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, seen) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            let mut index = 0;
            loop {
                let Ok((mut stream, _)) = listener.accept().await else {
                    return;
                };
                let act = acts[index.min(acts.len() - 1)].clone();
                index += 1;
                let Some(request) = read_request(&mut stream).await else {
                    continue;
                };
                let _ = tx.send(request);
                match act {
                    Act::Reply(bytes) => {
                        let _ = stream.write_all(&bytes).await;
                        let _ = stream.shutdown().await;
                    }
                    Act::Close => {
                        let _ = stream.shutdown().await;
                    }
                    Act::Reset => {
                        stream.set_zero_linger().unwrap();
                        drop(stream);
                    }
                    Act::Hang => {
                        tokio::spawn(async move {
                            tokio::time::sleep(Duration::from_secs(60)).await;
                            drop(stream);
                        });
                    }
                }
            }
        });
        Self { addr, seen }
    }

    fn url(&self, path_and_query: &str) -> Url {
        Url::parse(&format!("http://{}{}", self.addr, path_and_query)).unwrap()
    }

    async fn next(&mut self) -> Seen {
        self.seen.recv().await.expect("server stopped")
    }

    fn count(&mut self) -> usize {
        let mut n = 0;
        while self.seen.try_recv().is_ok() {
            n += 1;
        }
        n
    }
}

/// Reads one HTTP/1.1 request (head and `Content-Length` body).
async fn read_request(stream: &mut TcpStream) -> Option<Seen> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
        let mut headers = [httparse::EMPTY_HEADER; 64];
        let mut req = httparse::Request::new(&mut headers);
        if let httparse::Status::Complete(head_len) = req.parse(&buf).ok()? {
            let headers: Vec<(String, String)> = req
                .headers
                .iter()
                .map(|h| {
                    (
                        h.name.to_ascii_lowercase(),
                        String::from_utf8_lossy(h.value).into_owned(),
                    )
                })
                .collect();
            let length: usize = headers
                .iter()
                .find(|(n, _)| n == "content-length")
                .and_then(|(_, v)| v.parse().ok())
                .unwrap_or(0);
            let method = req.method?.to_owned();
            let target = req.path?.to_owned();
            let mut body = buf[head_len..].to_vec();
            while body.len() < length {
                let n = stream.read(&mut chunk).await.ok()?;
                if n == 0 {
                    return None;
                }
                body.extend_from_slice(&chunk[..n]);
            }
            return Some(Seen {
                method,
                target,
                headers,
                body,
            });
        }
    }
}

/// An HTTP/1.1 response with `Content-Length`.
fn http(status: &str, headers: &[(&str, &str)], body: &str) -> Vec<u8> {
    let mut out = format!("HTTP/1.1 {status}\r\nServer: SRS/6.0.155(Hang)\r\n");
    for (name, value) in headers {
        out.push_str(&format!("{name}: {value}\r\n"));
    }
    out.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
    out.into_bytes()
}

/// SRS's 201 answer.
fn srs_created(location: &str) -> Vec<u8> {
    http(
        "201 Created",
        &[
            ("Connection", "Keep-Alive"),
            ("Content-Type", "application/sdp"),
            ("Location", location),
        ],
        SRS_ANSWER,
    )
}

fn quick(timeout_ms: u64) -> SignalConfig {
    SignalConfig {
        timeout: Duration::from_millis(timeout_ms),
        ..SignalConfig::default()
    }
}

#[actix_rt::test]
async fn created_answer_with_relative_location() {
    bounded(async {
        let mut server = Server::start(vec![Act::Reply(http(
            "201 Created",
            &[
                ("Content-Type", "application/sdp"),
                ("Location", SRS_LOCATION),
                (
                    "Link",
                    "<stun:127.0.0.1:3478>; rel=\"ice-server\", \
                     <turn:127.0.0.1:3478?transport=udp>; rel=\"ice-server\"; \
                     username=\"u1\"; credential=\"c1\"; credential-type=\"password\"",
                ),
            ],
            SRS_ANSWER,
        ))])
        .await;
        let endpoint = server.url("/rtc/v1/whep/?app=live&stream=s1&token=q%2Bt~k&x");
        let cfg = SignalConfig {
            bearer_token: Some("b3ar3r".into()),
            traceparent: Some("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01".into()),
            ..quick(5_000)
        };
        let answer = post_offer(&http_client(), &endpoint, OFFER, &cfg)
            .await
            .unwrap();

        assert_eq!(answer.sdp, SRS_ANSWER);
        assert_eq!(answer.endpoint, endpoint);
        assert_eq!(
            answer.resource.as_ref().map(Url::as_str),
            Some(format!("http://{}{SRS_LOCATION}", server.addr).as_str())
        );
        assert_eq!(
            answer.info,
            AnswerInfo {
                ice_lite: true,
                candidates: 1,
                setup: Some("passive".into()),
                opus_payload_type: 111,
            }
        );
        assert_eq!(
            answer.ice_servers,
            vec![
                IceServer {
                    urls: vec!["stun:127.0.0.1:3478".into()],
                    username: None,
                    credential: None
                },
                IceServer {
                    urls: vec!["turn:127.0.0.1:3478?transport=udp".into()],
                    username: Some("u1".into()),
                    credential: Some("c1".into())
                },
            ]
        );

        let seen = server.next().await;
        assert_eq!(seen.method, "POST");
        assert_eq!(
            seen.target,
            "/rtc/v1/whep/?app=live&stream=s1&token=q%2Bt~k&x"
        );
        assert_eq!(seen.header("content-type"), Some("application/sdp"));
        assert_eq!(seen.header("accept"), Some("application/sdp"));
        assert_eq!(seen.header("authorization"), Some("Bearer b3ar3r"));
        assert_eq!(
            seen.header("traceparent"),
            Some("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")
        );
        assert_eq!(seen.header("connection"), Some("close"));
        assert_eq!(seen.body, OFFER.as_bytes());
    })
    .await;
}

#[actix_rt::test]
async fn webrtc_url_reaches_the_srs_whep_path() {
    bounded(async {
        let mut server = Server::start(vec![Act::Reply(srs_created(SRS_LOCATION))]).await;
        let endpoint = endpoint_url(&format!(
            "webrtc://127.0.0.1:{}/live/s1?token=abc%2F1",
            server.addr.port()
        ))
        .unwrap();
        post_offer(&http_client(), &endpoint, OFFER, &quick(5_000))
            .await
            .unwrap();
        let seen = server.next().await;
        assert_eq!(
            seen.target,
            "/rtc/v1/whep/?app=live&stream=s1&token=abc%2F1"
        );
        // No bearer configured: no Authorization header at all.
        assert_eq!(seen.header("authorization"), None);
    })
    .await;
}

#[actix_rt::test]
async fn redirect_307_to_another_server_then_201() {
    bounded(async {
        let mut target = Server::start(vec![Act::Reply(srs_created("resource/7?k=v"))]).await;
        let moved = target.url("/whep/next?stream=s1&token=t2");
        let mut origin = Server::start(vec![Act::Reply(http(
            "307 Temporary Redirect",
            &[("Location", moved.as_str())],
            "",
        ))])
        .await;
        let cfg = SignalConfig {
            bearer_token: Some("tok".into()),
            ..quick(5_000)
        };
        let answer = post_offer(&http_client(), &origin.url("/whep?stream=s1"), OFFER, &cfg)
            .await
            .unwrap();
        assert_eq!(answer.endpoint, moved);
        // The relative Location is joined against the final URL, not the first one.
        assert_eq!(
            answer.resource.unwrap().as_str(),
            format!("http://{}/whep/resource/7?k=v", target.addr)
        );
        let first = origin.next().await;
        let second = target.next().await;
        assert_eq!(first.body, OFFER.as_bytes());
        assert_eq!(second.method, "POST");
        assert_eq!(second.target, "/whep/next?stream=s1&token=t2");
        assert_eq!(second.body, OFFER.as_bytes());
        assert_eq!(second.header("authorization"), Some("Bearer tok"));
        assert_eq!(second.header("content-type"), Some("application/sdp"));
    })
    .await;
}

#[actix_rt::test]
async fn relative_308_and_301_redirects_are_followed_303_is_not() {
    bounded(async {
        let mut server = Server::start(vec![
            Act::Reply(http(
                "308 Permanent Redirect",
                &[("Location", "../v2/whep/?a=1")],
                "",
            )),
            Act::Reply(http("301 Moved Permanently", &[("Location", "/final")], "")),
            Act::Reply(srs_created(SRS_LOCATION)),
        ])
        .await;
        let answer = post_offer(
            &http_client(),
            &server.url("/v1/x/whep"),
            OFFER,
            &quick(5_000),
        )
        .await
        .unwrap();
        assert_eq!(answer.endpoint, server.url("/final"));
        let targets: Vec<String> = [
            server.next().await,
            server.next().await,
            server.next().await,
        ]
        .into_iter()
        .map(|s| {
            assert_eq!(s.method, "POST");
            assert_eq!(s.body, OFFER.as_bytes());
            s.target
        })
        .collect();
        assert_eq!(targets, ["/v1/x/whep", "/v1/v2/whep/?a=1", "/final"]);

        let other = Server::start(vec![Act::Reply(http(
            "303 See Other",
            &[("Location", "/result")],
            "",
        ))])
        .await;
        let err = post_offer(&http_client(), &other.url("/whep"), OFFER, &quick(5_000))
            .await
            .unwrap_err();
        assert!(
            matches!(err, WhepError::Status { status: 303, .. }),
            "{err:?}"
        );
    })
    .await;
}

#[actix_rt::test]
async fn redirect_loop_is_too_many_redirects() {
    bounded(async {
        let mut server = Server::start(vec![Act::Reply(http(
            "307 Temporary Redirect",
            &[("Location", "/loop")],
            "",
        ))])
        .await;
        let cfg = SignalConfig {
            max_redirects: 3,
            ..quick(5_000)
        };
        let err = post_offer(&http_client(), &server.url("/loop"), OFFER, &cfg)
            .await
            .unwrap_err();
        assert!(matches!(err, WhepError::TooManyRedirects), "{err:?}");
        assert!(!err.is_retryable());
        // The first request plus max_redirects follow-ups, then it stops.
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(server.count(), 4);
    })
    .await;
}

#[actix_rt::test]
async fn retry_after_503_waits_then_succeeds() {
    bounded(async {
        let mut server = Server::start(vec![
            Act::Reply(http(
                "503 Service Unavailable",
                &[("Retry-After", "1")],
                "busy",
            )),
            Act::Reply(srs_created(SRS_LOCATION)),
        ])
        .await;
        let started = Instant::now();
        let answer = post_offer(&http_client(), &server.url("/whep"), OFFER, &quick(5_000))
            .await
            .unwrap();
        let elapsed = started.elapsed();
        assert!(
            elapsed >= Duration::from_millis(950) && elapsed < Duration::from_millis(2_500),
            "waited {elapsed:?}"
        );
        assert_eq!(answer.info.opus_payload_type, 111);
        assert_eq!(server.next().await.body, OFFER.as_bytes());
        assert_eq!(server.next().await.body, OFFER.as_bytes());
    })
    .await;
}

#[actix_rt::test]
async fn retry_after_is_capped_and_retries_run_out() {
    bounded(async {
        let mut server = Server::start(vec![Act::Reply(http(
            "409 Conflict",
            &[("Retry-After", "3600")],
            "",
        ))])
        .await;
        let cfg = SignalConfig {
            max_retries: 2,
            max_retry_after: Duration::from_millis(100),
            ..quick(5_000)
        };
        let started = Instant::now();
        let err = post_offer(&http_client(), &server.url("/whep"), OFFER, &cfg)
            .await
            .unwrap_err();
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{:?}",
            started.elapsed()
        );
        assert!(
            matches!(
                err,
                WhepError::RetryExhausted {
                    status: 409,
                    attempts: 3
                }
            ),
            "{err:?}"
        );
        assert!(err.is_retryable());
        assert_eq!(server.count(), 3);

        // Without Retry-After a 503 is reported at once, for the caller's own backoff.
        let server =
            Server::start(vec![Act::Reply(http("503 Service Unavailable", &[], ""))]).await;
        let err = post_offer(&http_client(), &server.url("/whep"), OFFER, &cfg)
            .await
            .unwrap_err();
        assert!(
            matches!(err, WhepError::Status { status: 503, .. }),
            "{err:?}"
        );
    })
    .await;
}

#[actix_rt::test]
async fn closed_connection_without_response_is_no_response() {
    bounded(async {
        for act in [Act::Close, Act::Reset] {
            let server = Server::start(vec![act]).await;
            let endpoint = server.url("/rtc/v1/whep/?app=live&stream=s1&token=SECRET");
            let err = post_offer(&http_client(), &endpoint, OFFER, &quick(5_000))
                .await
                .unwrap_err();
            match &err {
                WhepError::NoResponse { url } => {
                    assert_eq!(
                        url,
                        &format!(
                            "http://{}/rtc/v1/whep/?app=live&stream=s1&token=***",
                            server.addr
                        )
                    )
                }
                other => panic!("expected NoResponse, got {other:?}"),
            }
            assert!(err.is_retryable());
            assert!(!err.to_string().contains("SECRET"));
        }
    })
    .await;
}

/// Pins down what awc itself reports, which `map_send_error` relies on: a FIN before any
/// response byte is `Connect(Disconnected)`, a RST is `Response(ParseError::Io(reset))`.
#[actix_rt::test]
async fn awc_errors_for_a_connection_closed_without_response() {
    bounded(async {
        let server = Server::start(vec![Act::Close]).await;
        let err = http_client()
            .post(server.url("/whep").as_str())
            .force_close()
            .send_body(OFFER)
            .await
            .unwrap_err();
        assert!(
            matches!(err, SendRequestError::Connect(ConnectError::Disconnected)),
            "{err:?}"
        );

        let server = Server::start(vec![Act::Reset]).await;
        let err = http_client()
            .post(server.url("/whep").as_str())
            .force_close()
            .send_body(OFFER)
            .await
            .unwrap_err();
        match err {
            SendRequestError::Response(actix_web::error::ParseError::Io(e)) => {
                assert_eq!(e.kind(), std::io::ErrorKind::ConnectionReset)
            }
            other => panic!("unexpected awc error {other:?}"),
        }
    })
    .await;
}

#[actix_rt::test]
async fn status_500_keeps_a_scrubbed_body() {
    bounded(async {
        let body = "{\"code\":5001,\"msg\":\"internal error for token SECRET1 and bearer \
                    B3AR3R\"}\r\n\r\n\u{7}";
        let server = Server::start(vec![Act::Reply(http(
            "500 Internal Server Error",
            &[("Content-Type", "application/json")],
            body,
        ))])
        .await;
        let cfg = SignalConfig {
            bearer_token: Some("B3AR3R".into()),
            ..quick(5_000)
        };
        let err = post_offer(
            &http_client(),
            &server.url("/whep?token=SECRET1"),
            OFFER,
            &cfg,
        )
        .await
        .unwrap_err();
        match &err {
            WhepError::Status { status, url, body } => {
                assert_eq!(*status, 500);
                assert_eq!(url, &format!("http://{}/whep?token=***", server.addr));
                assert_eq!(
                    body,
                    "{\"code\":5001,\"msg\":\"internal error for token *** and bearer ***\"}"
                );
            }
            other => panic!("expected Status, got {other:?}"),
        }
        assert!(err.is_retryable());
        let text = err.to_string();
        assert!(
            !text.contains("SECRET1") && !text.contains("B3AR3R"),
            "{text}"
        );

        let server = Server::start(vec![Act::Reply(http("401 Unauthorized", &[], "no"))]).await;
        let err = post_offer(&http_client(), &server.url("/whep"), OFFER, &cfg)
            .await
            .unwrap_err();
        assert!(matches!(err, WhepError::Status { status: 401, .. }));
        assert!(!err.is_retryable());
    })
    .await;
}

#[actix_rt::test]
async fn html_page_instead_of_sdp_is_not_sdp() {
    bounded(async {
        let page = "<!DOCTYPE html>\n<html><head><title>Sign in</title></head>\
                    <a href=\"/login?next=/whep?token=PAGETOKEN1\">login</a></html>";
        let server = Server::start(vec![Act::Reply(http(
            "200 OK",
            &[("Content-Type", "text/html; charset=utf-8")],
            page,
        ))])
        .await;
        let err = post_offer(
            &http_client(),
            &server.url("/whep?token=PAGETOKEN1"),
            OFFER,
            &quick(5_000),
        )
        .await
        .unwrap_err();
        match &err {
            WhepError::NotSdp {
                content_type,
                snippet,
            } => {
                assert_eq!(content_type.as_deref(), Some("text/html; charset=utf-8"));
                assert!(snippet.starts_with("<!DOCTYPE html> <html><head><title>Sign in"));
                assert!(snippet.contains("token=***"), "{snippet}");
                assert!(!snippet.contains("PAGETOKEN1"), "{snippet}");
            }
            other => panic!("expected NotSdp, got {other:?}"),
        }
        assert!(!err.is_retryable());
    })
    .await;
}

#[actix_rt::test]
async fn answer_without_audio_is_no_audio() {
    bounded(async {
        let video_only = SRS_ANSWER
            .replace(
                "m=audio 9 UDP/TLS/RTP/SAVPF 111",
                "m=video 9 UDP/TLS/RTP/SAVPF 106",
            )
            .replace("a=rtpmap:111 opus/48000/2", "a=rtpmap:106 H264/90000");
        let server = Server::start(vec![Act::Reply(http(
            "201 Created",
            &[
                ("Content-Type", "application/sdp"),
                ("Location", SRS_LOCATION),
            ],
            &video_only,
        ))])
        .await;
        let err = post_offer(&http_client(), &server.url("/whep"), OFFER, &quick(5_000))
            .await
            .unwrap_err();
        assert!(matches!(err, WhepError::NoAudio), "{err:?}");
        assert!(!err.is_retryable());
    })
    .await;
}

#[actix_rt::test]
async fn oversized_answer_is_rejected() {
    bounded(async {
        let huge = format!("{SRS_ANSWER}{}", "a=x-pad:0123456789\r\n".repeat(20_000));
        let server = Server::start(vec![Act::Reply(http(
            "201 Created",
            &[("Content-Type", "application/sdp")],
            &huge,
        ))])
        .await;
        let err = post_offer(&http_client(), &server.url("/whep"), OFFER, &quick(5_000))
            .await
            .unwrap_err();
        assert!(
            matches!(&err, WhepError::BadAnswer(m) if m.contains("larger than")),
            "{err:?}"
        );
    })
    .await;
}

#[actix_rt::test]
async fn silent_server_times_out_within_the_configured_timeout() {
    bounded(async {
        let server = Server::start(vec![Act::Hang]).await;
        let started = Instant::now();
        let err = post_offer(&http_client(), &server.url("/whep"), OFFER, &quick(700))
            .await
            .unwrap_err();
        let elapsed = started.elapsed();
        assert!(
            elapsed >= Duration::from_millis(650) && elapsed < Duration::from_millis(1_700),
            "{elapsed:?}"
        );
        match err {
            WhepError::Timeout { stage, after } => {
                assert!(stage.contains("response headers"), "{stage}");
                assert_eq!(after, Duration::from_millis(700));
            }
            other => panic!("expected Timeout, got {other:?}"),
        }
    })
    .await;
}

#[actix_rt::test]
async fn stalled_answer_body_times_out_too() {
    bounded(async {
        // Head and the first bytes of the body, then nothing: the deadline covers the body.
        let partial = format!(
            "HTTP/1.1 201 Created\r\nContent-Type: application/sdp\r\nContent-Length: {}\r\n\r\nv=0\r\n",
            SRS_ANSWER.len()
        );
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut stream, _) = listener.accept().await.unwrap();
            read_request(&mut stream).await.unwrap();
            stream.write_all(partial.as_bytes()).await.unwrap();
            tokio::time::sleep(Duration::from_secs(30)).await;
        });
        let endpoint = Url::parse(&format!("http://{addr}/whep")).unwrap();
        let started = Instant::now();
        let err = post_offer(&http_client(), &endpoint, OFFER, &quick(700))
            .await
            .unwrap_err();
        assert!(started.elapsed() < Duration::from_millis(1_700));
        assert!(
            matches!(err, WhepError::Timeout { stage: "answer body", .. }),
            "{err:?}"
        );
    })
    .await;
}

#[actix_rt::test]
async fn refused_port_is_connect_error() {
    bounded(async {
        let port = {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            listener.local_addr().unwrap().port()
        };
        let endpoint = Url::parse(&format!("http://127.0.0.1:{port}/whep")).unwrap();
        let err = post_offer(&http_client(), &endpoint, OFFER, &quick(5_000))
            .await
            .unwrap_err();
        match &err {
            WhepError::Connect { url, reason } => {
                assert_eq!(url, endpoint.as_str());
                assert!(reason.to_lowercase().contains("refused"), "{reason}");
            }
            other => panic!("expected Connect, got {other:?}"),
        }
        assert!(err.is_retryable());
    })
    .await;
}

/// TLS is compiled in (rustls): an https URL pointed at a plain TCP server fails in the TLS
/// handshake, reported as a connection error, not as "SSL is not supported".
#[actix_rt::test]
async fn https_handshake_failure_is_connect_error() {
    bounded(async {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut stream, _) = listener.accept().await.unwrap();
            let mut hello = [0u8; 512];
            let _ = stream.read(&mut hello).await;
            let _ = stream.write_all(b"HTTP/1.1 400 Bad Request\r\n\r\n").await;
        });
        let endpoint = Url::parse(&format!("https://{addr}/whep")).unwrap();
        let err = post_offer(&http_client(), &endpoint, OFFER, &quick(5_000))
            .await
            .unwrap_err();
        match &err {
            WhepError::Connect { reason, .. } => {
                assert!(!reason.contains("not supported"), "{reason}")
            }
            other => panic!("expected Connect, got {other:?}"),
        }
    })
    .await;
}

#[actix_rt::test]
async fn garbage_instead_of_http_is_a_protocol_error() {
    bounded(async {
        let server = Server::start(vec![Act::Reply(b"SSH-2.0-OpenSSH_9.6\r\n\r\n".to_vec())]).await;
        let err = post_offer(&http_client(), &server.url("/whep"), OFFER, &quick(5_000))
            .await
            .unwrap_err();
        assert!(matches!(err, WhepError::Protocol { .. }), "{err:?}");
    })
    .await;
}

#[actix_rt::test]
async fn delete_goes_to_the_joined_location_with_the_bearer() {
    bounded(async {
        let mut server = Server::start(vec![
            Act::Reply(srs_created(SRS_LOCATION)),
            Act::Reply(http(
                "200 OK",
                &[("Content-Type", "application/json")],
                "{\"code\":0}",
            )),
            Act::Reply(http("404 Not Found", &[], "")),
            Act::Reply(http("500 Internal Server Error", &[], "boom")),
        ])
        .await;
        let cfg = SignalConfig {
            bearer_token: Some("b3ar3r".into()),
            ..quick(5_000)
        };
        let client = http_client();
        let answer = post_offer(
            &client,
            &server.url("/rtc/v1/whep/?app=live&stream=s1"),
            OFFER,
            &cfg,
        )
        .await
        .unwrap();
        let resource = answer.resource.unwrap();
        delete_resource(&client, &resource, &cfg).await.unwrap();
        // 404: already gone (SRS dropped it), fine for a teardown.
        delete_resource(&client, &resource, &cfg).await.unwrap();
        let err = delete_resource(&client, &resource, &cfg).await.unwrap_err();
        assert!(
            matches!(&err, WhepError::Status { status: 500, body, .. } if body == "boom"),
            "{err:?}"
        );

        let _post = server.next().await;
        let delete = server.next().await;
        assert_eq!(delete.method, "DELETE");
        assert_eq!(delete.target, SRS_LOCATION);
        assert_eq!(delete.header("authorization"), Some("Bearer b3ar3r"));
        assert!(delete.body.is_empty());
    })
    .await;
}

#[actix_rt::test]
async fn legacy_srs_play_api() {
    bounded(async {
        let reply = serde_json::json!({
            "code": 0,
            "server": "vid-0xk989d",
            "service": "8ae4y2mq",
            "pid": "2151",
            "sdp": SRS_ANSWER,
            "sessionid": "0a8n4c7m:wF8v",
        })
        .to_string();
        let mut server = Server::start(vec![
            Act::Reply(http(
                "200 OK",
                &[("Content-Type", "application/json")],
                &reply,
            )),
            Act::Reply(http(
                "200 OK",
                &[("Content-Type", "application/json")],
                "{\"code\":400,\"server\":\"vid-0xk989d\"}",
            )),
        ])
        .await;
        let input = format!("webrtc://127.0.0.1:{}/live/s1?token=t1", server.addr.port());
        let (api, streamurl) = srs_play_request(&input).unwrap();
        let client = http_client();
        let answer = srs_play(&client, &api, &streamurl, OFFER, &quick(5_000))
            .await
            .unwrap();
        assert_eq!(answer.sdp, SRS_ANSWER);
        assert_eq!(answer.resource, None);
        assert_eq!(answer.endpoint, api);
        assert!(answer.info.ice_lite);

        let seen = server.next().await;
        assert_eq!(seen.method, "POST");
        assert_eq!(seen.target, "/rtc/v1/play/?token=t1");
        assert_eq!(seen.header("content-type"), Some("application/json"));
        let body: serde_json::Value = serde_json::from_slice(&seen.body).unwrap();
        assert_eq!(body["api"], api.as_str());
        assert_eq!(body["streamurl"], input.as_str());
        assert_eq!(body["sdp"], OFFER);

        let err = srs_play(&client, &api, &streamurl, OFFER, &quick(5_000))
            .await
            .unwrap_err();
        assert!(matches!(err, WhepError::SrsApi { code: 400 }), "{err:?}");
    })
    .await;
}
