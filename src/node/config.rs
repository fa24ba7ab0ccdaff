//! The node configuration of `whep-bridge serve` (SPEC §5): the typed form, its defaults, its
//! validation and its conversion into what the pipeline and the API use. Loading and layering
//! (file < env < flags) is in `load.rs`, the key list and the rendered defaults in `keys.rs`.
//!
//! Keys are snake_case in sections: `output.sample_rate` is `sample_rate` under `[output]`,
//! and `WHEP_BRIDGE_OUTPUT_SAMPLE_RATE` in the environment. Times are seconds (fractions
//! allowed) in keys ending in `_secs`, milliseconds in keys ending in `_ms`.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::api::spec::check;
use crate::api::spec::{NodeDefaults, WsMode};
use crate::config::{EnvelopeKind, IceServer, OutputFormat, PipelineSettings, RtcConfig, Timeouts};
use crate::telemetry::LogFormat;

/// Node id used when neither the configuration nor the host name provides one.
pub const FALLBACK_NODE_ID: &str = "node-1";

/// Longest accepted time value (one day): larger values are typos, and they keep
/// `Duration` conversions far from overflow.
const MAX_SECS: f64 = 86_400.0;

/// The whole node configuration. Every section and key has a default
/// ([`crate::node::render_defaults`] prints them with their documentation).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NodeConfig {
    pub node: NodeSection,
    pub api: ApiSection,
    pub consumer: ConsumerSection,
    pub output: OutputSection,
    pub rtc: RtcSection,
    pub whep: WhepSection,
    pub timeouts: TimeoutsSection,
    pub media: MediaSection,
    pub redis: RedisSection,
}

/// `[redis]`: the cluster coordinator. Without a URL the node coordinates alone, in memory.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RedisSection {
    /// `redis://[user:password@]host:port[/db]` or `rediss://…`; None: embedded coordinator.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// Prefix of every key, so several deployments can share one Redis.
    pub prefix: String,
    pub lease_ttl_secs: f64,
    pub timeout_secs: f64,
    /// A stream local retries have not fixed for this long moves to another node.
    pub handover_after_secs: f64,
    /// How long a node stays away from a stream it handed over (doubled per repeat).
    pub cooldown_secs: f64,
    pub cooldown_max_secs: f64,
}

impl Default for RedisSection {
    fn default() -> Self {
        Self {
            url: None,
            prefix: "whep-bridge".to_owned(),
            lease_ttl_secs: 3.0,
            timeout_secs: 1.0,
            handover_after_secs: 10.0,
            cooldown_secs: 30.0,
            cooldown_max_secs: 600.0,
        }
    }
}

/// `[node]`: identity and logging.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NodeSection {
    /// Node id in messages (`node`), metrics and the cluster; default: the host name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    pub log_format: LogStyle,
}

/// `node.log_format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogStyle {
    #[default]
    Human,
    Json,
}

impl From<LogStyle> for LogFormat {
    fn from(s: LogStyle) -> Self {
        match s {
            LogStyle::Human => LogFormat::Human,
            LogStyle::Json => LogFormat::Json,
        }
    }
}

/// `[api]`: the HTTP API.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ApiSection {
    pub listen: SocketAddr,
    /// `host:port` peers reach this node's API at (None: derived from `listen`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub advertise: Option<String>,
    /// Bearer token required on `/v1/*` (None: no authentication).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    pub max_body_bytes: usize,
}

impl Default for ApiSection {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            advertise: None,
            token: None,
            max_body_bytes: 65_536,
        }
    }
}

/// `[consumer]`: the WebSocket side's defaults and behaviour.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ConsumerSection {
    /// Default `wsUrl` (None: every stream must give one).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ws_url: Option<String>,
    /// Handshake headers sent to the default `ws_url` only.
    pub ws_headers: BTreeMap<String, String>,
    pub ws_mode: WsMode,
    pub ws_ping_secs: f64,
    pub replay_buffer_secs: f64,
}

impl Default for ConsumerSection {
    fn default() -> Self {
        Self {
            ws_url: None,
            ws_headers: BTreeMap::new(),
            ws_mode: WsMode::PerStream,
            ws_ping_secs: 10.0,
            replay_buffer_secs: 30.0,
        }
    }
}

/// `[output]`: the default output format.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OutputSection {
    pub sample_rate: u32,
    pub channels: u16,
    pub chunk_ms: u32,
    pub envelope: EnvelopeKind,
}

impl Default for OutputSection {
    fn default() -> Self {
        let f = OutputFormat::default();
        Self {
            sample_rate: f.sample_rate,
            channels: f.channels,
            chunk_ms: f.chunk_ms,
            envelope: f.envelope,
        }
    }
}

/// `[rtc]`: WebRTC transport.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RtcSection {
    /// Default ICE servers in the CLI form: `stun:host:port`, `turn:user:pass@host:port`.
    pub ice_servers: Vec<String>,
    pub include_loopback: bool,
    pub allowed_ips: Vec<IpAddr>,
    /// `MIN-MAX`, inclusive.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub udp_port_range: Option<String>,
    pub ipv6: bool,
}

impl Default for RtcSection {
    fn default() -> Self {
        let r = RtcConfig::default();
        Self {
            ice_servers: Vec::new(),
            include_loopback: r.include_loopback,
            allowed_ips: Vec::new(),
            udp_port_range: None,
            ipv6: r.ipv6,
        }
    }
}

/// `[whep]`: reconnecting (the same capped, fully jittered backoff serves the consumer side).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WhepSection {
    pub backoff_base_secs: f64,
    pub backoff_max_secs: f64,
}

impl Default for WhepSection {
    fn default() -> Self {
        let p = PipelineSettings::default();
        Self {
            backoff_base_secs: p.backoff_base.as_secs_f64(),
            backoff_max_secs: p.backoff_max.as_secs_f64(),
        }
    }
}

/// `[timeouts]`: every network wait (see [`Timeouts`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TimeoutsSection {
    pub http_secs: f64,
    pub ice_gathering_secs: f64,
    pub connect_secs: f64,
    pub first_rtp_secs: f64,
    pub ws_connect_secs: f64,
}

impl Default for TimeoutsSection {
    fn default() -> Self {
        let t = Timeouts::default();
        Self {
            http_secs: t.http.as_secs_f64(),
            ice_gathering_secs: t.ice_gathering.as_secs_f64(),
            connect_secs: t.connect.as_secs_f64(),
            first_rtp_secs: t.first_rtp.as_secs_f64(),
            ws_connect_secs: t.ws_connect.as_secs_f64(),
        }
    }
}

/// `[media]`: reordering and the media watchdog.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MediaSection {
    pub jitter_ms: u32,
    pub stall_secs: f64,
    pub reconnect_secs: f64,
}

impl Default for MediaSection {
    fn default() -> Self {
        let p = PipelineSettings::default();
        Self {
            jitter_ms: p.jitter_ms,
            stall_secs: p.media_stall.as_secs_f64(),
            reconnect_secs: p.media_reconnect.as_secs_f64(),
        }
    }
}

/// A validated seconds value as a `Duration` (invalid values were refused by `validate`).
fn secs(v: f64) -> Duration {
    Duration::try_from_secs_f64(v).unwrap_or_default()
}

/// `MIN-MAX` → (min, max), both non-zero, min ≤ max.
pub fn parse_port_range(s: &str) -> Result<(u16, u16), String> {
    let (a, b) = s
        .split_once('-')
        .ok_or_else(|| "expected MIN-MAX, e.g. 40000-40100".to_owned())?;
    let a: u16 = a.trim().parse().map_err(|e| format!("{a:?}: {e}"))?;
    let b: u16 = b.trim().parse().map_err(|e| format!("{b:?}: {e}"))?;
    if a == 0 || b < a {
        return Err("the range is empty or starts at 0".to_owned());
    }
    Ok((a, b))
}

/// A time value: finite, from `min` to [`MAX_SECS`] seconds.
fn check_secs(key: &'static str, v: f64, min: f64) -> Result<(), (&'static str, String)> {
    if v.is_finite() && (min..=MAX_SECS).contains(&v) {
        return Ok(());
    }
    Err((
        key,
        format!("must be a number of seconds from {min} to {MAX_SECS}"),
    ))
}

impl NodeConfig {
    /// The node id: `node.id`, else [`FALLBACK_NODE_ID`] (`load` fills `node.id` from the
    /// host name when the configuration leaves it out).
    pub fn node_id(&self) -> &str {
        self.node.id.as_deref().unwrap_or(FALLBACK_NODE_ID)
    }

    /// The Redis coordinator's settings, when a URL is configured.
    pub fn redis_settings(&self) -> Option<crate::cluster::redis::RedisSettings> {
        let url = self.redis.url.as_deref()?;
        let mut s = crate::cluster::redis::RedisSettings::new(url);
        s.prefix = self.redis.prefix.clone();
        s.lease_ttl = secs(self.redis.lease_ttl_secs);
        s.timeout = secs(self.redis.timeout_secs);
        Some(s)
    }

    /// When a failing stream moves to another node (cluster only).
    pub fn handover_policy(&self) -> crate::cluster::handover::HandoverPolicy {
        crate::cluster::handover::HandoverPolicy {
            after: secs(self.redis.handover_after_secs),
            cooldown: secs(self.redis.cooldown_secs),
            cooldown_max: secs(self.redis.cooldown_max_secs),
        }
    }

    /// The default output format.
    pub fn output_format(&self) -> OutputFormat {
        OutputFormat {
            sample_rate: self.output.sample_rate,
            channels: self.output.channels,
            chunk_ms: self.output.chunk_ms,
            envelope: self.output.envelope,
        }
    }

    /// Checks every value; the error names the key (`section.key`) at fault.
    pub fn validate(&self) -> Result<(), (&'static str, String)> {
        if let Some(id) = &self.node.id {
            check::check_id(id).map_err(|m| ("node.id", m))?;
        }
        if let Some(t) = &self.api.token {
            check::check_token(t).map_err(|m| ("api.token", m))?;
        }
        if let Some(a) = &self.api.advertise {
            let port = a.rsplit_once(':').and_then(|(h, p)| {
                let host_ok = !h.is_empty()
                    && h.chars()
                        .all(|c| c.is_ascii_alphanumeric() || ".-[]:".contains(c));
                p.parse::<u16>().ok().filter(|p| host_ok && *p > 0)
            });
            if port.is_none() {
                return Err((
                    "api.advertise",
                    "expected host:port (e.g. 10.0.0.12:8080)".to_owned(),
                ));
            }
        }
        if !(1_024..=16 << 20).contains(&self.api.max_body_bytes) {
            return Err((
                "api.max_body_bytes",
                "must be from 1024 to 16777216".to_owned(),
            ));
        }
        if let Some(u) = &self.consumer.ws_url {
            check::check_ws_url(u).map_err(|m| ("consumer.ws_url", m))?;
        }
        for (name, value) in &self.consumer.ws_headers {
            check::check_header_name(name).map_err(|m| ("consumer.ws_headers", m))?;
            check::check_header_value(value)
                .map_err(|m| ("consumer.ws_headers", format!("header {name:?}: {m}")))?;
        }
        if let Some(u) = &self.redis.url {
            if !(u.starts_with("redis://") || u.starts_with("rediss://")) {
                return Err((
                    "redis.url",
                    "must start with redis:// or rediss://".to_owned(),
                ));
            }
            redis::Client::open(u.as_str())
                .map_err(|e| ("redis.url", format!("not a Redis URL ({:?})", e.kind())))?;
        }
        if self.redis.prefix.is_empty()
            || self.redis.prefix.len() > 64
            || self.redis.prefix.chars().any(|c| c.is_whitespace())
        {
            return Err((
                "redis.prefix",
                "must be 1-64 characters without spaces".to_owned(),
            ));
        }
        check_secs("redis.lease_ttl_secs", self.redis.lease_ttl_secs, 0.5)?;
        check_secs("redis.timeout_secs", self.redis.timeout_secs, 0.05)?;
        if self.redis.timeout_secs * 2.0 > self.redis.lease_ttl_secs {
            return Err((
                "redis.timeout_secs",
                "must be at most half of redis.lease_ttl_secs (a renewal must fit in the lease)"
                    .to_owned(),
            ));
        }
        check_secs(
            "redis.handover_after_secs",
            self.redis.handover_after_secs,
            1.0,
        )?;
        check_secs("redis.cooldown_secs", self.redis.cooldown_secs, 1.0)?;
        check_secs("redis.cooldown_max_secs", self.redis.cooldown_max_secs, 1.0)?;
        if self.redis.cooldown_max_secs < self.redis.cooldown_secs {
            return Err((
                "redis.cooldown_max_secs",
                "must be at least redis.cooldown_secs".to_owned(),
            ));
        }
        check_secs("consumer.ws_ping_secs", self.consumer.ws_ping_secs, 0.1)?;
        check_secs(
            "consumer.replay_buffer_secs",
            self.consumer.replay_buffer_secs,
            0.0,
        )?;
        self.output_format().validate().map_err(|(field, m)| {
            let key = match field {
                "sampleRate" => "output.sample_rate",
                "channels" => "output.channels",
                _ => "output.chunk_ms",
            };
            (key, m)
        })?;
        for (i, s) in self.rtc.ice_servers.iter().enumerate() {
            let server = IceServer::parse_cli(s).map_err(|m| ("rtc.ice_servers", m))?;
            check::check_ice_server(&server)
                .map_err(|(sub, m)| ("rtc.ice_servers", format!("entry {i} ({sub}): {m}")))?;
        }
        if let Some(r) = &self.rtc.udp_port_range {
            parse_port_range(r).map_err(|m| ("rtc.udp_port_range", m))?;
        }
        let w = &self.whep;
        check_secs("whep.backoff_base_secs", w.backoff_base_secs, 0.01)?;
        check_secs("whep.backoff_max_secs", w.backoff_max_secs, 0.01)?;
        if w.backoff_max_secs < w.backoff_base_secs {
            return Err((
                "whep.backoff_max_secs",
                "must not be less than whep.backoff_base_secs".to_owned(),
            ));
        }
        let t = &self.timeouts;
        for (key, v) in [
            ("timeouts.http_secs", t.http_secs),
            ("timeouts.ice_gathering_secs", t.ice_gathering_secs),
            ("timeouts.connect_secs", t.connect_secs),
            ("timeouts.first_rtp_secs", t.first_rtp_secs),
            ("timeouts.ws_connect_secs", t.ws_connect_secs),
        ] {
            check_secs(key, v, 0.1)?;
        }
        let m = &self.media;
        if m.jitter_ms > 1_000 {
            return Err(("media.jitter_ms", "must be from 0 to 1000".to_owned()));
        }
        check_secs("media.stall_secs", m.stall_secs, 0.1)?;
        check_secs("media.reconnect_secs", m.reconnect_secs, 0.1)?;
        if m.reconnect_secs < m.stall_secs {
            return Err((
                "media.reconnect_secs",
                "must not be less than media.stall_secs".to_owned(),
            ));
        }
        Ok(())
    }

    /// The per-node pipeline settings. ICE servers are not put in `rtc`: they travel with
    /// each stream (node defaults via [`Self::to_defaults`]). Streams of a node retry for
    /// ever (`max_consecutive_failures: None`), showing `failing` meanwhile (SPEC §6).
    pub fn to_settings(&self) -> PipelineSettings {
        PipelineSettings {
            node: self.node_id().to_owned(),
            rtc: RtcConfig {
                ice_servers: Vec::new(),
                include_loopback: self.rtc.include_loopback,
                allowed_ips: self.rtc.allowed_ips.clone(),
                udp_port_range: self
                    .rtc
                    .udp_port_range
                    .as_deref()
                    .and_then(|r| parse_port_range(r).ok()),
                ipv6: self.rtc.ipv6,
                srs_like_answer: false,
            },
            timeouts: Timeouts {
                http: secs(self.timeouts.http_secs),
                ice_gathering: secs(self.timeouts.ice_gathering_secs),
                connect: secs(self.timeouts.connect_secs),
                first_rtp: secs(self.timeouts.first_rtp_secs),
                ws_connect: secs(self.timeouts.ws_connect_secs),
            },
            jitter_ms: self.media.jitter_ms,
            media_stall: secs(self.media.stall_secs),
            media_reconnect: secs(self.media.reconnect_secs),
            backoff_base: secs(self.whep.backoff_base_secs),
            backoff_max: secs(self.whep.backoff_max_secs),
            max_consecutive_failures: None,
            ws_ping: secs(self.consumer.ws_ping_secs),
            replay_buffer: self.replay_buffer(),
        }
    }

    /// What streams created through the API inherit.
    pub fn to_defaults(&self) -> NodeDefaults {
        NodeDefaults {
            ws_url: self.consumer.ws_url.clone(),
            ws_headers: self.consumer.ws_headers.clone(),
            output: self.output_format(),
            // Validated by `load`; an entry that does not parse cannot reach here.
            ice_servers: self
                .rtc
                .ice_servers
                .iter()
                .filter_map(|s| IceServer::parse_cli(s).ok())
                .collect(),
            ws_mode: self.consumer.ws_mode,
        }
    }

    /// The consumer replay buffer bound (SPEC §4.3).
    pub fn replay_buffer(&self) -> Duration {
        secs(self.consumer.replay_buffer_secs)
    }
}

#[cfg(test)]
mod tests;
