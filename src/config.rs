//! Configuration types shared by the pipeline, the WHEP client and the CLI.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// How each chunk is wrapped for the consumer (SPEC §4.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EnvelopeKind {
    /// `{"traceId","stmId","timestamp","data"}`, byte-compatible with the replaced system.
    #[default]
    Seed,
    /// Seed plus `seq`, `pts`, `sampleRate`, `channels`, `epoch`, `node`.
    Extended,
    /// A JSON start frame, then raw PCM in binary frames, then a stop frame.
    Binary,
}

impl std::str::FromStr for EnvelopeKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "seed" => Ok(Self::Seed),
            "extended" => Ok(Self::Extended),
            "binary" => Ok(Self::Binary),
            other => Err(format!(
                "unknown envelope {other:?} (expected seed, extended or binary)"
            )),
        }
    }
}

/// The PCM the consumer receives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OutputFormat {
    /// Target sample rate in Hz (8000, 16000, 22050, 24000, 44100, 48000).
    pub sample_rate: u32,
    /// 1 (mono, default) or 2 (stereo).
    pub channels: u16,
    /// Chunk duration in milliseconds (default 200 ms = 6400 bytes at 16 kHz mono).
    pub chunk_ms: u32,
    pub envelope: EnvelopeKind,
}

impl Default for OutputFormat {
    fn default() -> Self {
        Self {
            sample_rate: 16_000,
            channels: 1,
            chunk_ms: 200,
            envelope: EnvelopeKind::Seed,
        }
    }
}

/// Sample rates the output side accepts.
pub const SUPPORTED_RATES: [u32; 6] = [8_000, 16_000, 22_050, 24_000, 44_100, 48_000];

impl OutputFormat {
    /// Checks the format; the error names the field at fault.
    pub fn validate(&self) -> Result<(), (&'static str, String)> {
        if !SUPPORTED_RATES.contains(&self.sample_rate) {
            return Err((
                "sampleRate",
                format!(
                    "{} Hz is not supported (use one of {:?})",
                    self.sample_rate, SUPPORTED_RATES
                ),
            ));
        }
        if !(1..=2).contains(&self.channels) {
            return Err(("channels", format!("{} (use 1 or 2)", self.channels)));
        }
        if !(20..=5_000).contains(&self.chunk_ms) || self.chunk_ms % 10 != 0 {
            return Err((
                "chunkMs",
                format!(
                    "{} (use a multiple of 10 between 20 and 5000)",
                    self.chunk_ms
                ),
            ));
        }
        Ok(())
    }

    /// Bytes of s16le PCM in one chunk.
    pub fn chunk_bytes(&self) -> usize {
        self.sample_rate as usize * self.channels as usize * 2 * self.chunk_ms as usize / 1000
    }
}

/// One STUN or TURN server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct IceServer {
    pub urls: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credential: Option<String>,
}

impl IceServer {
    /// Parses `stun:host:port` or `turn:user:pass@host:port?transport=udp` (CLI form).
    pub fn parse_cli(s: &str) -> Result<Self, String> {
        let (scheme, rest) = s
            .split_once(':')
            .ok_or_else(|| format!("ICE server {s:?} has no scheme (stun:, turn:, turns:)"))?;
        if !matches!(scheme, "stun" | "stuns" | "turn" | "turns") {
            return Err(format!("ICE server {s:?}: unsupported scheme {scheme:?}"));
        }
        match rest.rsplit_once('@') {
            Some((cred, host)) => {
                let (user, pass) = cred
                    .split_once(':')
                    .ok_or_else(|| format!("ICE server {s:?}: credentials must be user:pass@"))?;
                Ok(Self {
                    urls: vec![format!("{scheme}:{host}")],
                    username: Some(user.to_owned()),
                    credential: Some(pass.to_owned()),
                })
            }
            None => Ok(Self {
                urls: vec![s.to_owned()],
                username: None,
                credential: None,
            }),
        }
    }
}

/// WebRTC transport settings (SPEC §3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RtcConfig {
    pub ice_servers: Vec<IceServer>,
    /// Gather loopback candidates (needed when the source is on 127.0.0.1).
    pub include_loopback: bool,
    /// When non-empty, only these local addresses are used for candidates.
    pub allowed_ips: Vec<std::net::IpAddr>,
    /// Inclusive UDP port range for local candidates.
    pub udp_port_range: Option<(u16, u16)>,
    /// Also gather IPv6 candidates (default: UDP over IPv4 only, cheaper).
    pub ipv6: bool,
    /// When answering: behave like SRS, an ICE-lite agent with `setup:passive` (DTLS
    /// server). Only the synthetic source answers; the client always offers full ICE.
    pub srs_like_answer: bool,
}

impl Default for RtcConfig {
    fn default() -> Self {
        Self {
            ice_servers: Vec::new(),
            include_loopback: true,
            allowed_ips: Vec::new(),
            udp_port_range: None,
            ipv6: false,
            srs_like_answer: false,
        }
    }
}

/// Timeouts on every network wait (SPEC §3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// TCP connect plus request/response headers of one HTTP exchange.
    pub http: Duration,
    /// ICE candidate gathering before the offer is sent.
    pub ice_gathering: Duration,
    /// From answer to connected (ICE + DTLS).
    pub connect: Duration,
    /// From connected to the first RTP packet.
    pub first_rtp: Duration,
    /// WebSocket connect (TCP, TLS, upgrade).
    pub ws_connect: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Self {
            http: Duration::from_secs(10),
            ice_gathering: Duration::from_secs(5),
            connect: Duration::from_secs(10),
            first_rtp: Duration::from_secs(15),
            ws_connect: Duration::from_secs(10),
        }
    }
}

/// Everything needed to run one stream (SPEC §5 stream spec, resolved against node defaults).
#[derive(Debug, Clone)]
pub struct StreamSpec {
    pub stm_id: String,
    pub trace_id: String,
    /// As given by the user (http(s):// WHEP endpoint or webrtc://).
    pub whep_url: String,
    pub whep_token: Option<String>,
    pub ws_url: String,
    pub ws_headers: Vec<(String, String)>,
    pub ice_servers: Vec<IceServer>,
    pub output: OutputFormat,
    /// Decode at 48 kHz stereo and convert with rubato even when libopus could decode the
    /// target format natively (for non-Opus-native targets this happens anyway).
    pub force_resample: bool,
}

/// Per-node settings every stream shares.
#[derive(Debug, Clone)]
pub struct PipelineSettings {
    pub node: String,
    pub rtc: RtcConfig,
    pub timeouts: Timeouts,
    /// Reorder window for late packets (0 disables reordering).
    pub jitter_ms: u32,
    /// No RTP for this long marks the stream `stalled`.
    pub media_stall: Duration,
    /// No RTP for this long reconnects WHEP (SRS keeps a session whose publisher left).
    pub media_reconnect: Duration,
    /// Reconnect backoff: first delay and cap (full jitter).
    pub backoff_base: Duration,
    pub backoff_max: Duration,
    /// Give up after this many consecutive failed attempts (None: retry forever).
    pub max_consecutive_failures: Option<u32>,
    /// WebSocket ping interval; a consumer silent for 3 intervals is considered dead.
    pub ws_ping: Duration,
    /// Audio kept per stream while the consumer is unreachable (SPEC §4.3).
    pub replay_buffer: Duration,
}

impl Default for PipelineSettings {
    fn default() -> Self {
        Self {
            node: "local".to_owned(),
            rtc: RtcConfig::default(),
            timeouts: Timeouts::default(),
            jitter_ms: 60,
            media_stall: Duration::from_secs(5),
            media_reconnect: Duration::from_secs(15),
            backoff_base: Duration::from_millis(500),
            backoff_max: Duration::from_secs(30),
            max_consecutive_failures: None,
            ws_ping: Duration::from_secs(10),
            replay_buffer: Duration::from_secs(30),
        }
    }
}

/// A new random trace id: 32 lowercase hex digits (an OpenTelemetry trace id).
pub fn new_trace_id() -> String {
    use std::fmt::Write;
    let bytes: [u8; 16] = rand::random();
    bytes.iter().fold(String::with_capacity(32), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// The trace id of a stream created without one: 32 hex digits derived from its `stmId`
/// (FNV-1a, 128 bit), so every node of a cluster — and every takeover — puts the stream's
/// spans in the same trace, and storing the same spec twice stays idempotent.
pub fn derived_trace_id(stm_id: &str) -> String {
    const OFFSET: u128 = 0x6c62272e07bb014262b821756295c58d;
    const PRIME: u128 = 0x0000000001000000000000000000013B;
    let hash = b"whep-bridge:"
        .iter()
        .chain(stm_id.as_bytes())
        .fold(OFFSET, |h, b| (h ^ u128::from(*b)).wrapping_mul(PRIME));
    format!("{hash:032x}")
}

/// The `User-Agent` a node sends on WHEP requests and consumer handshakes: media servers and
/// consumers can tell which node of a cluster is calling (their logs, per-node rules).
pub fn user_agent(node: &str) -> String {
    format!("whep-bridge/{} (node {node})", env!("CARGO_PKG_VERSION"))
}
