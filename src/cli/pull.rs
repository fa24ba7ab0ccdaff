//! `whep-bridge pull`: one stream in the foreground, no API.
//!
//! Exits 0 after a clean stop (`--duration` elapsed, Ctrl-C or SIGTERM: WHEP DELETE and WS
//! close are done first), non-zero with the reason when the stream cannot run.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use clap::Args;
use tokio::sync::oneshot;

use crate::config::{
    new_trace_id, EnvelopeKind, IceServer, OutputFormat, PipelineSettings, RtcConfig, StreamSpec,
};
use crate::pipeline::supervisor::{Stop, StreamExit, StreamSupervisor};

#[derive(Args, Debug, Clone)]
pub struct PullArgs {
    /// WHEP endpoint (http(s)://…) or SRS stream URL (webrtc://host[:port]/app/stream).
    #[arg(long)]
    pub whep: String,
    /// Consumer WebSocket URL (ws:// or wss://); `{stmId}` and `{traceId}` are substituted.
    #[arg(long)]
    pub ws: String,
    /// Stream id put in every message (default: derived from the WHEP URL).
    #[arg(long)]
    pub stm_id: Option<String>,
    /// Trace id put in every message (default: 32 random hex digits).
    #[arg(long)]
    pub trace_id: Option<String>,
    /// Output sample rate: 8000, 16000, 22050, 24000, 44100 or 48000.
    #[arg(long, default_value_t = 16_000)]
    pub sample_rate: u32,
    /// Output channels: 1 or 2.
    #[arg(long, default_value_t = 1)]
    pub channels: u16,
    /// Chunk duration in milliseconds.
    #[arg(long, default_value_t = 200)]
    pub chunk_ms: u32,
    /// Message format: seed, extended or binary.
    #[arg(long, default_value = "seed")]
    pub envelope: EnvelopeKind,
    /// STUN/TURN server, repeatable: stun:host:port or turn:user:pass@host:port.
    #[arg(long = "ice-server", value_parser = IceServer::parse_cli)]
    pub ice_servers: Vec<IceServer>,
    /// Bearer token for the WHEP endpoint.
    #[arg(long, env = "WHEP_BRIDGE_WHEP_TOKEN", hide_env_values = true)]
    pub whep_token: Option<String>,
    /// Extra WebSocket handshake header, repeatable: "Name: value".
    #[arg(long = "ws-header", value_parser = parse_header)]
    pub ws_headers: Vec<(String, String)>,
    /// Stop after this many seconds (default: run until Ctrl-C).
    #[arg(long)]
    pub duration: Option<f64>,
    /// Decode at 48 kHz stereo and convert with rubato even when libopus could decode the
    /// target format directly.
    #[arg(long)]
    pub force_resample: bool,
    /// Reorder window in ms (0 disables).
    #[arg(long, default_value_t = 60)]
    pub jitter_ms: u32,
    /// Only use these local addresses for ICE candidates (repeatable), e.g. 127.0.0.1.
    #[arg(long = "rtc-ip")]
    pub rtc_ips: Vec<IpAddr>,
    /// Local UDP port range for ICE, e.g. 40000-40100.
    #[arg(long, value_parser = parse_port_range)]
    pub udp_ports: Option<(u16, u16)>,
    /// Seconds without RTP before the stream is reported `stalled`.
    #[arg(long, default_value_t = 5.0)]
    pub stall_after: f64,
    /// Seconds without RTP before WHEP is reconnected (SRS keeps a silent session open).
    #[arg(long, default_value_t = 15.0)]
    pub media_timeout: f64,
    /// Give up after this many consecutive failed WHEP attempts.
    #[arg(long, default_value_t = 5)]
    pub max_failures: u32,
    /// Print a stats line every N seconds (0: never).
    #[arg(long, default_value_t = 5)]
    pub stats_every: u64,
}

fn parse_header(s: &str) -> Result<(String, String), String> {
    let (k, v) = s
        .split_once(':')
        .ok_or_else(|| format!("header {s:?} must look like 'Name: value'"))?;
    let k = k.trim();
    if k.is_empty() {
        return Err(format!("header {s:?} has an empty name"));
    }
    Ok((k.to_owned(), v.trim().to_owned()))
}

fn parse_port_range(s: &str) -> Result<(u16, u16), String> {
    let (a, b) = s
        .split_once('-')
        .ok_or_else(|| format!("port range {s:?} must look like MIN-MAX"))?;
    let a: u16 = a.trim().parse().map_err(|e| format!("{s:?}: {e}"))?;
    let b: u16 = b.trim().parse().map_err(|e| format!("{s:?}: {e}"))?;
    if a == 0 || b < a {
        return Err(format!("port range {s:?} is empty or starts at 0"));
    }
    Ok((a, b))
}

/// A stream id from the WHEP URL: the `stream` query parameter (SRS), else the last path
/// segment, else "stream".
fn derive_stm_id(whep: &str) -> String {
    let parsed = url::Url::parse(whep).ok();
    let from_query = parsed.as_ref().and_then(|u| {
        u.query_pairs()
            .find(|(k, _)| k == "stream")
            .map(|(_, v)| v.into_owned())
    });
    let from_path = parsed.as_ref().and_then(|u| {
        u.path_segments()
            .and_then(|mut s| s.rfind(|p| !p.is_empty()).map(str::to_owned))
    });
    from_query
        .or(from_path)
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "stream".to_owned())
}

impl PullArgs {
    fn into_parts(self) -> Result<(StreamSpec, PipelineSettings, Option<Duration>, u64), String> {
        let output = OutputFormat {
            sample_rate: self.sample_rate,
            channels: self.channels,
            chunk_ms: self.chunk_ms,
            envelope: self.envelope,
        };
        output
            .validate()
            .map_err(|(field, msg)| format!("--{}: {msg}", kebab(field)))?;
        if !(self.ws.starts_with("ws://") || self.ws.starts_with("wss://")) {
            return Err(format!(
                "--ws must be a ws:// or wss:// URL, got {:?}",
                self.ws
            ));
        }
        for (flag, v) in [
            ("--stall-after", self.stall_after),
            ("--media-timeout", self.media_timeout),
        ] {
            if !(v > 0.0 && v.is_finite()) {
                return Err(format!(
                    "{flag} must be a positive number of seconds, got {v}"
                ));
            }
        }
        if self.media_timeout < self.stall_after {
            return Err("--media-timeout must not be shorter than --stall-after".to_owned());
        }
        let duration = match self.duration {
            Some(d) if !(d > 0.0 && d.is_finite()) => {
                return Err(format!("--duration must be a positive number, got {d}"))
            }
            Some(d) => Some(Duration::from_secs_f64(d)),
            None => None,
        };
        let spec = StreamSpec {
            stm_id: self
                .stm_id
                .clone()
                .unwrap_or_else(|| derive_stm_id(&self.whep)),
            trace_id: self.trace_id.clone().unwrap_or_else(new_trace_id),
            whep_url: self.whep,
            whep_token: self.whep_token,
            ws_url: self.ws,
            ws_headers: self.ws_headers,
            ice_servers: self.ice_servers,
            output,
            force_resample: self.force_resample,
        };
        let settings = PipelineSettings {
            node: "pull".to_owned(),
            rtc: RtcConfig {
                allowed_ips: self.rtc_ips,
                udp_port_range: self.udp_ports,
                ..RtcConfig::default()
            },
            jitter_ms: self.jitter_ms,
            media_stall: Duration::from_secs_f64(self.stall_after),
            media_reconnect: Duration::from_secs_f64(self.media_timeout),
            max_consecutive_failures: Some(self.max_failures.max(1)),
            ..PipelineSettings::default()
        };
        Ok((spec, settings, duration, self.stats_every))
    }
}

fn kebab(field: &str) -> String {
    field.chars().fold(String::new(), |mut s, c| {
        if c.is_ascii_uppercase() {
            s.push('-');
            s.push(c.to_ascii_lowercase());
        } else {
            s.push(c);
        }
        s
    })
}

/// Why the foreground run ends.
enum Ending {
    Exit(Result<StreamExit, oneshot::error::RecvError>),
    Stop(&'static str),
}

pub fn run(args: PullArgs) -> Result<(), String> {
    let (spec, settings, duration, stats_every) = args.into_parts()?;
    let system = actix::System::new();
    system.block_on(async move {
        let stm_id = spec.stm_id.clone();
        tracing::info!(stm_id = %stm_id, trace_id = %spec.trace_id, "starting pull");
        let (tx, mut rx) = oneshot::channel();
        let supervisor =
            StreamSupervisor::new(spec, Arc::new(settings), tx, None).map_err(|e| e.to_string())?;
        let stats = supervisor.stats();
        let addr = supervisor.start();

        if stats_every > 0 {
            let stats = stats.clone();
            let stm_id = stm_id.clone();
            actix::spawn(async move {
                let mut tick = tokio::time::interval(Duration::from_secs(stats_every));
                tick.tick().await;
                loop {
                    tick.tick().await;
                    let s = stats.snapshot();
                    tracing::info!(
                        stm_id = %stm_id, packets = s.packets, lost = s.lost,
                        concealed_ms = s.concealed_ms, chunks = s.chunks, bytes = s.bytes,
                        latency_avg_ms = format_args!("{:.1}", s.latency_avg_ms),
                        "stats"
                    );
                }
            });
        }

        let timer = async {
            match duration {
                Some(d) => tokio::time::sleep(d).await,
                None => std::future::pending::<()>().await,
            }
        };
        let ending = tokio::select! {
            exit = &mut rx => Ending::Exit(exit),
            why = super::shutdown_signal() => Ending::Stop(why),
            _ = timer => Ending::Stop("duration reached"),
        };
        let exit = match ending {
            Ending::Exit(exit) => exit,
            Ending::Stop(why) => {
                tracing::info!(stm_id = %stm_id, reason = why, "stopping");
                addr.do_send(Stop);
                match tokio::time::timeout(Duration::from_secs(10), rx).await {
                    Ok(exit) => exit,
                    Err(_) => return Err("the stream did not stop within 10 s".to_owned()),
                }
            }
        };
        let exit = exit.map_err(|_| "the stream ended without a report".to_owned())?;
        let s = &exit.stats;
        tracing::info!(
            stm_id = %stm_id, packets = s.packets, lost = s.lost, concealed_ms = s.concealed_ms,
            chunks = s.chunks, bytes = s.bytes, whep_connects = s.whep_connects,
            "stream finished"
        );
        match exit.error {
            None => Ok(()),
            Some(e) => Err(format!("stream {stm_id} failed: {e}")),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stm_id_from_srs_query_or_path() {
        assert_eq!(
            derive_stm_id("http://h:1985/rtc/v1/whep/?app=live&stream=room1"),
            "room1"
        );
        assert_eq!(derive_stm_id("http://h/whep/abc"), "abc");
        assert_eq!(derive_stm_id("webrtc://h/live/xyz"), "xyz");
        assert_eq!(derive_stm_id("garbage"), "stream");
    }

    #[test]
    fn headers_and_ranges_parse_or_explain() {
        assert_eq!(
            parse_header("Authorization: Bearer x").unwrap(),
            ("Authorization".into(), "Bearer x".into())
        );
        assert!(parse_header("nocolon").is_err());
        assert_eq!(parse_port_range("40000-40010").unwrap(), (40000, 40010));
        assert!(parse_port_range("5-1").is_err());
        assert!(parse_port_range("0-10").is_err());
    }

    #[test]
    fn bad_output_names_the_flag() {
        let args = PullArgs {
            whep: "http://h/whep/a".into(),
            ws: "ws://h/".into(),
            stm_id: None,
            trace_id: None,
            sample_rate: 11_025,
            channels: 1,
            chunk_ms: 200,
            envelope: EnvelopeKind::Seed,
            ice_servers: vec![],
            whep_token: None,
            ws_headers: vec![],
            duration: None,
            force_resample: false,
            jitter_ms: 60,
            rtc_ips: vec![],
            udp_ports: None,
            stall_after: 5.0,
            media_timeout: 15.0,
            max_failures: 5,
            stats_every: 0,
        };
        let err = args.clone().into_parts().err().unwrap();
        assert!(err.contains("--sample-rate"), "{err}");
        let err = PullArgs {
            sample_rate: 16_000,
            ws: "http://x".into(),
            ..args
        }
        .into_parts()
        .err()
        .unwrap();
        assert!(err.contains("--ws"), "{err}");
    }
}
