//! `whep-bridge demo`: the whole path on one machine, in one process, with nothing else
//! installed (no SRS, no Redis, no speech engine): the synthetic WHEP source, a WebSocket
//! sink and a node whose API creates N streams from the source to the sink. It prints a
//! live per-stream table every second, then a summary and PASS/FAIL, and stops gracefully
//! (WHEP DELETE, consumer close). Exit code 0 on PASS, 1 on FAIL.
//!
//! Threads: the source and the sink run on a small tokio runtime of their own (named
//! [`TOOLS_THREAD`], so their CPU time can be told apart from the node's); the node runs in
//! an actix `System` on the main thread with its arbiters, exactly as under `serve`.

mod procstat;
mod report;
mod screen;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::{Duration, Instant};

use clap::Args;

use crate::node::registry::ListStreams;
use crate::node::service::{self, RunningNode};
use crate::node::NodeConfig;
use crate::sink::{self, RunningSink};
use crate::telemetry::LogFormat;
use crate::testsrc::{TestSource, TestSrcArgs};

use procstat::{CpuSample, CpuUse};
use report::{Resources, Row};
use screen::Screen;

/// Name of the threads running the test source and the sink (at most 15 bytes: Linux
/// truncates thread names there, and `/proc` shows the truncated one).
const TOOLS_THREAD: &str = "demo-tools";
/// Longest wait for every stream to deliver its first chunk before measuring anyway.
const STARTUP_LIMIT: Duration = Duration::from_secs(20);
/// How often the figures are read (the table is drawn every [`DRAW_EVERY`]).
const TICK: Duration = Duration::from_millis(250);
const DRAW_EVERY: Duration = Duration::from_secs(1);
/// Longest wait after the drain for the source and the sink to see their sessions end.
const TEARDOWN_WAIT: Duration = Duration::from_secs(3);
/// Timeout of each API request the demo makes to its own node.
const API_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Args, Debug, Clone)]
pub struct DemoArgs {
    /// Number of streams.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub streams: u32,
    /// Seconds to measure once every stream delivers audio; 0 runs until Ctrl-C.
    #[arg(long, default_value_t = 20)]
    pub seconds: u64,
    /// Address of the node's HTTP API (port 0 picks a free port).
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
}

/// Logging for the demo: warnings only unless `RUST_LOG` says otherwise, so the table is
/// not buried under the node's, the source's and the sink's info lines.
pub fn init_logging(format: LogFormat) {
    crate::telemetry::init_logging_at(format, "warn");
}

/// Runs the demo; `Ok(true)` on PASS.
pub fn run(args: DemoArgs) -> Result<bool, String> {
    let tools = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name(TOOLS_THREAD)
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the runtime: {e}"))?;
    let loopback = |port| SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port);
    let (source, sink) = tools.block_on(async {
        let source = TestSource::start(TestSrcArgs::on(loopback(0)))
            .await
            .map_err(|e| format!("test source: {e}"))?;
        let sink = sink::start(loopback(0))
            .await
            .map_err(|e| format!("sink: {e}"))?;
        Ok::<_, String>((source, sink))
    })?;
    let cfg = node_config(args.listen, sink.local_addr())?;
    let outcome = actix::System::new().block_on(run_node(&args, cfg, &source, &sink));
    tools.block_on(source.shutdown());
    drop(sink);
    tools.shutdown_timeout(Duration::from_secs(1));
    outcome
}

/// The demo node: documented defaults (no config file, no environment, so the demo behaves
/// the same everywhere), loopback-only ICE, and the demo sink as the default consumer.
fn node_config(listen: SocketAddr, sink: SocketAddr) -> Result<NodeConfig, String> {
    let listen = listen.to_string();
    let ws = format!("ws://{sink}/demo/{{stmId}}");
    NodeConfig::load(
        None,
        std::iter::empty(),
        &[
            ("api.listen", &listen),
            ("node.id", "demo"),
            ("rtc.allowed_ips", "127.0.0.1"),
            ("consumer.ws_url", &ws),
        ],
    )
    .map_err(|e| format!("invalid configuration: {e}"))
}

/// `http://` base of the node's API as a local client reaches it (a wildcard listen address
/// is reached over loopback).
fn api_base(addr: SocketAddr) -> String {
    let ip = match addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    format!("http://{}", SocketAddr::new(ip, addr.port()))
}

/// The API body of stream `i` (1-based): its own tone pair, so the streams differ.
fn stream_body(i: u32, source_base: &str, sink: SocketAddr) -> String {
    let left = 200 + 50 * ((i - 1) % 200);
    let right = left * 3 / 2;
    serde_json::json!({
        "stmId": stream_id(i),
        "whepUrl": format!("{source_base}/whep/{}?freq={left}&freq_r={right}", stream_id(i)),
        "wsUrl": format!("ws://{sink}/demo/{{stmId}}"),
    })
    .to_string()
}

fn stream_id(i: u32) -> String {
    format!("demo-{i}")
}

/// Creates every stream with `POST /v1/streams` on the node's own API.
async fn create_streams(
    api: &str,
    n: u32,
    source_base: &str,
    sink: SocketAddr,
) -> Result<(), String> {
    let client = awc::Client::builder().timeout(API_TIMEOUT).finish();
    let url = format!("{api}/v1/streams");
    for i in 1..=n {
        let body = stream_body(i, source_base, sink);
        let mut resp = client
            .post(&url)
            .insert_header(("Content-Type", "application/json"))
            .send_body(body)
            .await
            .map_err(|e| format!("POST {url}: {e}"))?;
        if resp.status().as_u16() != 201 {
            let text = resp
                .body()
                .await
                .map(|b| String::from_utf8_lossy(&b).into_owned())
                .unwrap_or_default();
            return Err(format!(
                "POST {url} for {} answered {}: {text}",
                stream_id(i),
                resp.status()
            ));
        }
    }
    Ok(())
}

/// The same request by hand, for the user to try.
fn curl_hint(api: &str, n: u32, source_base: &str, sink: SocketAddr) -> String {
    format!(
        "Streams were created through the node's API, e.g. {first}:\n  \
         curl -X POST {api}/v1/streams -H 'Content-Type: application/json' \\\n    \
         -d '{body}'\n\
         Add one while the demo runs (same with \"stmId\":\"{extra}\"), or look: \
         curl {api}/v1/streams\n",
        first = stream_id(1),
        body = stream_body(1, source_base, sink),
        extra = stream_id(n + 1),
    )
}

/// Reads the node's streams and the sink's tally at one instant.
async fn read_rows(node: &RunningNode, sink: &RunningSink) -> Vec<Row> {
    let streams = node.registry.send(ListStreams).await.unwrap_or_default();
    report::rows(&streams, &sink.snapshot(), Instant::now())
}

/// Why the live loop ended.
enum Ended {
    /// The measured time is over.
    Done,
    /// Ctrl-C or SIGTERM.
    Signal(&'static str),
    /// The node's API server died.
    Failed(String),
}

/// The measured window: from when every stream delivers (or [`STARTUP_LIMIT`]).
struct Window {
    start: Instant,
    cpu: Option<CpuSample>,
    all_delivering: bool,
}

async fn run_node(
    args: &DemoArgs,
    cfg: NodeConfig,
    source: &TestSource,
    sink: &RunningSink,
) -> Result<bool, String> {
    let signal = super::shutdown_signal();
    tokio::pin!(signal);
    let mut node = service::start(cfg)
        .await
        .map_err(|e| format!("{e} (--listen 127.0.0.1:0 picks a free port)"))?;
    let api = api_base(node.addr);
    let source_base = source.base_url();
    let n = args.streams;
    let mut screen = Screen::stdout();
    screen.text(&format!(
        "whep-bridge demo: {n} stream(s) for {}\n  test source  {source_base} (Opus 48 kHz stereo tones)\n  \
         sink         ws://{}/demo/{{stmId}}\n  node API     {api}\n",
        match args.seconds {
            0 => "as long as you like (Ctrl-C ends)".to_owned(),
            s => format!("{s} s once all deliver (Ctrl-C ends early)"),
        },
        sink.local_addr(),
    ));
    let created_at = Instant::now();
    let mut window = Window {
        start: created_at,
        cpu: procstat::sample(TOOLS_THREAD),
        all_delivering: false,
    };
    let created = tokio::select! {
        r = create_streams(&api, n, &source_base, sink.local_addr()) => r.map(|()| None),
        why = &mut signal => Ok(Some(why)),
    };
    let ended = match created {
        Err(e) => {
            node.shutdown(super::serve::DRAIN_GRACE).await;
            return Err(e);
        }
        Ok(Some(why)) => Ended::Signal(why),
        Ok(None) => {
            screen.text(&curl_hint(&api, n, &source_base, sink.local_addr()));
            let mut live = Live {
                args,
                node: &mut node,
                sink,
                screen: &mut screen,
                window: &mut window,
                created_at,
            };
            live.run(&mut signal).await
        }
    };
    finish(node, source, sink, &mut screen, ended, &window, n as usize).await
}

/// Summary at the end of the window (before the drain changes the states), drain, teardown
/// check, verdict.
async fn finish(
    node: RunningNode,
    source: &TestSource,
    sink: &RunningSink,
    screen: &mut Screen<std::io::Stdout>,
    ended: Ended,
    window: &Window,
    expected: usize,
) -> Result<bool, String> {
    let rows = read_rows(&node, sink).await;
    let cpu_end = procstat::sample(TOOLS_THREAD);
    let window_s = window.start.elapsed().as_secs_f64();
    let res = Resources {
        cpu: window
            .cpu
            .zip(cpu_end)
            .and_then(|(a, b)| CpuUse::between(&a, &b)),
        rss_kib: procstat::rss_kib(),
    };
    let label = if window.all_delivering {
        format!("{window_s:.1} s once every stream was delivering")
    } else {
        format!("{window_s:.1} s from stream creation")
    };
    if let Ended::Signal(why) = &ended {
        screen.text(&format!("Stopping early ({why})."));
    }
    screen.text(&report::summary(&rows, &label, &res));

    screen.text(&format!(
        "Stopping {} stream(s): WHEP DELETE to the source, close to the consumer ...",
        rows.len()
    ));
    let drain_start = Instant::now();
    node.shutdown(super::serve::DRAIN_GRACE).await;
    let deadline = Instant::now() + TEARDOWN_WAIT;
    while (source.sessions() > 0 || sink.open_connections() > 0) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    screen.text(&format!(
        "Stopped in {:.1} s: {} WHEP session(s) left at the source, {} consumer connection(s) \
         left open at the sink.",
        drain_start.elapsed().as_secs_f64(),
        source.sessions(),
        sink.open_connections()
    ));

    if let Ended::Failed(e) = ended {
        return Err(e);
    }
    let verdict = report::verdict(&rows, expected);
    if verdict.pass {
        screen.text(&format!(
            "PASS: {} stream(s) live, each delivered >= {:.0} % of the wall time since its first chunk.",
            rows.len(),
            report::MIN_DELIVERED_RATIO * 100.0
        ));
    } else {
        let mut text = String::from("FAIL:\n");
        for p in &verdict.problems {
            text.push_str(&format!("  {p}\n"));
        }
        screen.text(&text);
    }
    Ok(verdict.pass)
}

/// The live phase: what it reads and where it draws.
struct Live<'a> {
    args: &'a DemoArgs,
    node: &'a mut RunningNode,
    sink: &'a RunningSink,
    screen: &'a mut Screen<std::io::Stdout>,
    window: &'a mut Window,
    created_at: Instant,
}

impl Live<'_> {
    /// Redraws the table until the measured time is over, a signal, or the API server dies.
    /// Starts the measured window once every stream delivers (or after [`STARTUP_LIMIT`]).
    async fn run(
        &mut self,
        signal: &mut std::pin::Pin<&mut impl std::future::Future<Output = &'static str>>,
    ) -> Ended {
        let n = self.args.streams as usize;
        let measure = Duration::from_secs(self.args.seconds);
        let mut tick = tokio::time::interval(TICK);
        let mut last_draw: Option<Instant> = None;
        let mut measuring = false;
        loop {
            let deadline = (measuring && !measure.is_zero()).then(|| self.window.start + measure);
            let ended = tokio::select! {
                _ = tick.tick() => None,
                _ = sleep_until_opt(deadline) => Some(Ended::Done),
                why = signal.as_mut() => Some(Ended::Signal(why)),
                why = self.node.failed() => Some(Ended::Failed(why)),
            };
            if let Some(e) = ended {
                return e;
            }
            let rows = read_rows(self.node, self.sink).await;
            let now = Instant::now();
            if !measuring {
                let delivering = rows.iter().filter(|r| r.wall_s.is_some()).count();
                let all = rows.len() >= n && delivering >= rows.len();
                if all || now.duration_since(self.created_at) >= STARTUP_LIMIT {
                    *self.window = Window {
                        start: now,
                        cpu: procstat::sample(TOOLS_THREAD),
                        all_delivering: all,
                    };
                    measuring = true;
                }
            }
            if last_draw.is_none_or(|t| now.duration_since(t) >= DRAW_EVERY) {
                last_draw = Some(now);
                let status = status_line(
                    &rows,
                    n,
                    measuring.then_some(&*self.window),
                    measure,
                    self.created_at,
                    now,
                );
                self.screen.table(&report::table(&status, &rows));
            }
        }
    }
}

/// The line above the table: time since creation and the phase (`window`: measuring).
fn status_line(
    rows: &[Row],
    n: usize,
    window: Option<&Window>,
    measure: Duration,
    created_at: Instant,
    now: Instant,
) -> String {
    // Whole seconds, truncated, so the counters tick like a clock.
    let t = now.duration_since(created_at).as_secs();
    let Some(window) = window else {
        let delivering = rows.iter().filter(|r| r.wall_s.is_some()).count();
        return format!("t={t}s  starting: {delivering}/{n} stream(s) delivering");
    };
    let m = now.duration_since(window.start).as_secs();
    if measure.is_zero() {
        format!("t={t}s  measuring {m} s (Ctrl-C ends)")
    } else {
        format!(
            "t={t}s  measuring {m}/{} s (Ctrl-C ends early)",
            measure.as_secs()
        )
    }
}

async fn sleep_until_opt(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d.into()).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_bodies_are_valid_api_requests_with_distinct_tones() {
        let sink: SocketAddr = "127.0.0.1:9000".parse().unwrap();
        let mut urls = std::collections::BTreeSet::new();
        for i in [1, 2, 200, 201, 1000] {
            let body = stream_body(i, "http://127.0.0.1:8088", sink);
            let req = crate::api::spec::parse_stream_request(body.as_bytes(), None)
                .unwrap_or_else(|p| panic!("{body}: {p:?}"));
            assert_eq!(req.stm_id, format!("demo-{i}"));
            assert_eq!(
                req.ws_url.as_deref(),
                Some("ws://127.0.0.1:9000/demo/{stmId}")
            );
            urls.insert(req.whep_url);
        }
        // Every URL names its own stream; the tones cycle after 200 streams.
        assert_eq!(urls.len(), 5);
        let one = stream_body(1, "http://h:1", sink);
        assert!(one.contains("freq=200&freq_r=300"), "{one}");
        let top = stream_body(200, "http://h:1", sink);
        assert!(top.contains("freq=10150&freq_r=15225"), "{top}");
    }

    #[test]
    fn the_demo_node_config_is_valid_and_loopback_only() {
        let cfg = node_config(
            "127.0.0.1:0".parse().unwrap(),
            "127.0.0.1:9000".parse().unwrap(),
        )
        .unwrap();
        assert_eq!(cfg.node_id(), "demo");
        assert_eq!(cfg.api.listen.port(), 0);
        assert_eq!(cfg.rtc.allowed_ips, vec![IpAddr::V4(Ipv4Addr::LOCALHOST)]);
        assert_eq!(
            cfg.consumer.ws_url.as_deref(),
            Some("ws://127.0.0.1:9000/demo/{stmId}")
        );
    }

    #[test]
    fn wildcard_listen_is_reached_over_loopback() {
        assert_eq!(
            api_base("0.0.0.0:8080".parse().unwrap()),
            "http://127.0.0.1:8080"
        );
        assert_eq!(api_base("[::]:81".parse().unwrap()), "http://[::1]:81");
        assert_eq!(
            api_base("10.1.2.3:80".parse().unwrap()),
            "http://10.1.2.3:80"
        );
    }
}
