//! Every configuration key, in one table: its kind (how an environment variable or a flag's
//! string becomes a TOML value), whether its value is secret, and its documentation. The
//! table drives the environment mapping, error messages and [`render_defaults`]; a test
//! checks it against [`NodeConfig`]'s serialized form so the two cannot drift apart.
//!
//! Environment mapping: `WHEP_BRIDGE_<SECTION>_<KEY>`, upper-cased, e.g. `api.listen` is
//! `WHEP_BRIDGE_API_LISTEN` and `output.sample_rate` is `WHEP_BRIDGE_OUTPUT_SAMPLE_RATE`.

use super::config::NodeConfig;
use crate::api::spec::redact_url_str;

/// How a string (environment variable, flag) is read for a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyKind {
    Str,
    Int,
    Float,
    /// `true`/`false`, `1`/`0`, `yes`/`no`, `on`/`off`.
    Bool,
    /// Comma-separated, or a TOML array.
    List,
    /// A TOML inline table, e.g. `{ Authorization = "Bearer x" }`.
    Map,
}

/// How a key's value may be shown in messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shown {
    Plain,
    /// Never shown (`***`).
    Secret,
    /// URLs, shown redacted.
    Urls,
}

/// One configuration key.
#[derive(Debug)]
pub struct KeyDef {
    pub section: &'static str,
    pub name: &'static str,
    pub kind: KeyKind,
    /// No default value (unset unless configured); an empty environment value unsets it.
    pub optional: bool,
    pub shown: Shown,
    pub doc: &'static str,
    /// Example value (TOML) printed, commented out, for optional keys.
    pub example: &'static str,
}

impl KeyDef {
    /// `section.name`.
    pub fn key(&self) -> String {
        format!("{}.{}", self.section, self.name)
    }

    /// `WHEP_BRIDGE_<SECTION>_<NAME>`.
    pub fn env_var(&self) -> String {
        format!("WHEP_BRIDGE_{}_{}", self.section, self.name).to_ascii_uppercase()
    }

    /// `value` as it may appear in a message.
    pub fn show(&self, value: &toml::Value) -> String {
        match (self.shown, value) {
            (Shown::Plain, v) => v.to_string(),
            (Shown::Secret, _) => "\"***\"".to_owned(),
            (Shown::Urls, toml::Value::String(s)) => format!("{:?}", redact_url_str(s)),
            (Shown::Urls, toml::Value::Array(items)) => {
                let shown: Vec<String> = items
                    .iter()
                    .map(|v| match v {
                        toml::Value::String(s) => format!("{:?}", redact_url_str(s)),
                        other => other.to_string(),
                    })
                    .collect();
                format!("[{}]", shown.join(", "))
            }
            (Shown::Urls, v) => v.to_string(),
        }
    }

    /// Reads a string from the environment or a flag. `Ok(None)`: unset the (optional) key.
    pub fn parse(&self, raw: &str) -> Result<Option<toml::Value>, String> {
        use toml::Value;
        if self.optional && raw.trim().is_empty() {
            return Ok(None);
        }
        let v = match self.kind {
            KeyKind::Str => Value::String(raw.to_owned()),
            KeyKind::Int => Value::Integer(
                raw.trim()
                    .parse()
                    .map_err(|_| "expected an integer".to_owned())?,
            ),
            KeyKind::Float => {
                let f: f64 = raw
                    .trim()
                    .parse()
                    .map_err(|_| "expected a number".to_owned())?;
                Value::Float(f)
            }
            KeyKind::Bool => match raw.trim().to_ascii_lowercase().as_str() {
                "true" | "1" | "yes" | "on" => Value::Boolean(true),
                "false" | "0" | "no" | "off" => Value::Boolean(false),
                _ => return Err("expected true or false".to_owned()),
            },
            KeyKind::List if raw.trim_start().starts_with('[') => inline(raw)?,
            KeyKind::List => Value::Array(
                raw.split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(|s| Value::String(s.to_owned()))
                    .collect(),
            ),
            KeyKind::Map => match inline(raw)? {
                v @ Value::Table(_) => v,
                _ => return Err("expected a TOML inline table { Name = \"value\" }".to_owned()),
            },
        };
        Ok(Some(v))
    }
}

/// A TOML value written inline (`[…]`, `{…}`).
fn inline(raw: &str) -> Result<toml::Value, String> {
    let table: toml::Table = toml::from_str(&format!("v = {raw}"))
        .map_err(|e| format!("not a TOML value: {}", e.message()))?;
    table
        .get("v")
        .cloned()
        .ok_or_else(|| "not a TOML value".to_owned())
}

const fn key(
    section: &'static str,
    name: &'static str,
    kind: KeyKind,
    doc: &'static str,
) -> KeyDef {
    KeyDef {
        section,
        name,
        kind,
        optional: false,
        shown: Shown::Plain,
        doc,
        example: "",
    }
}

const fn optional(
    section: &'static str,
    name: &'static str,
    shown: Shown,
    doc: &'static str,
    example: &'static str,
) -> KeyDef {
    KeyDef {
        section,
        name,
        kind: KeyKind::Str,
        optional: true,
        shown,
        doc,
        example,
    }
}

const fn with_shown(mut def: KeyDef, shown: Shown) -> KeyDef {
    def.shown = shown;
    def
}

use KeyKind::{Bool, Float, Int, List, Map, Str};

/// Every key, in the order [`render_defaults`] prints them.
pub const KEYS: &[KeyDef] = &[
    optional(
        "node",
        "id",
        Shown::Plain,
        "Node id: the `node` of extended/binary messages, metrics, the cluster.\n\
         Default: the host name ($HOSTNAME, else /etc/hostname), else \"node-1\".",
        "\"node-a\"",
    ),
    key(
        "node",
        "log_format",
        Str,
        "Log output: \"human\" or \"json\".",
    ),
    key(
        "api",
        "listen",
        Str,
        "Address (IP:port) the HTTP API listens on.",
    ),
    optional(
        "api",
        "advertise",
        Shown::Plain,
        "host:port other nodes use to reach this node's API (GET and /listen of a stream\n\
         another node runs are forwarded there). Default: api.listen, or when that listens\n\
         on every interface (0.0.0.0 / ::), the host name with the listen port.\n\
         In Kubernetes, set it from the pod IP.",
        "\"10.0.0.12:8080\"",
    ),
    optional(
        "api",
        "token",
        Shown::Secret,
        "Bearer token required on /v1/* (unset: no authentication).\n\
         Prefer the environment variable: keep secrets out of files.",
        "\"change-me\"",
    ),
    key(
        "api",
        "max_body_bytes",
        Int,
        "Largest accepted request body, in bytes.",
    ),
    optional(
        "consumer",
        "ws_url",
        Shown::Urls,
        "Consumer WebSocket URL (ws:// or wss://) for streams that give no wsUrl;\n\
         may contain {stmId} and {traceId}. Unset: every stream must give wsUrl.",
        "\"ws://127.0.0.1:9000/ingest/{stmId}\"",
    ),
    with_shown(
        key(
            "consumer",
            "ws_headers",
            Map,
            "Handshake headers (e.g. Authorization) sent to consumer.ws_url only, never to a\n\
         stream's own wsUrl. Environment: a TOML inline table { Name = \"value\" }.",
        ),
        Shown::Secret,
    ),
    key(
        "consumer",
        "ws_mode",
        Str,
        "\"per-stream\" (one connection per stream) or \"shared\" (one per URL, streams\n\
         multiplexed); streams may override it (output.wsMode).",
    ),
    key(
        "consumer",
        "ws_ping_secs",
        Float,
        "WebSocket ping interval; a consumer silent for 3 intervals is considered dead.",
    ),
    key(
        "consumer",
        "replay_buffer_secs",
        Float,
        "Audio kept per stream while the consumer is unreachable, replayed in order on\n\
         reconnect; beyond it the oldest audio is dropped and counted (0 disables).",
    ),
    key(
        "output",
        "sample_rate",
        Int,
        "Default sample rate: 8000, 16000, 22050, 24000, 44100 or 48000.",
    ),
    key("output", "channels", Int, "Default channels: 1 or 2."),
    key(
        "output",
        "chunk_ms",
        Int,
        "Default chunk duration in ms: a multiple of 10 from 20 to 5000.",
    ),
    key(
        "output",
        "envelope",
        Str,
        "Default envelope: \"seed\", \"extended\" or \"binary\".",
    ),
    with_shown(
        key(
            "rtc",
            "ice_servers",
            List,
            "Default ICE servers: \"stun:host:port\" or \"turn:user:pass@host:port\".\n\
         Environment: comma-separated.",
        ),
        Shown::Urls,
    ),
    key(
        "rtc",
        "include_loopback",
        Bool,
        "Gather loopback candidates (needed for sources on 127.0.0.1).",
    ),
    key(
        "rtc",
        "allowed_ips",
        List,
        "Only these local IPs for ICE candidates (empty: all). Environment: comma-separated.",
    ),
    optional(
        "rtc",
        "udp_port_range",
        Shown::Plain,
        "Local UDP ports for ICE, MIN-MAX inclusive (unset: any).",
        "\"40000-40100\"",
    ),
    key("rtc", "ipv6", Bool, "Also gather IPv6 candidates."),
    key(
        "whep",
        "backoff_base_secs",
        Float,
        "First reconnect delay (WHEP and consumer); doubles per failure, fully jittered.",
    ),
    key(
        "whep",
        "backoff_max_secs",
        Float,
        "Cap of the reconnect delay.",
    ),
    key(
        "timeouts",
        "http_secs",
        Float,
        "WHEP HTTP exchange: connect plus response headers.",
    ),
    key(
        "timeouts",
        "ice_gathering_secs",
        Float,
        "ICE candidate gathering before the offer.",
    ),
    key(
        "timeouts",
        "connect_secs",
        Float,
        "From the WHEP answer to connected (ICE + DTLS).",
    ),
    key(
        "timeouts",
        "first_rtp_secs",
        Float,
        "From connected to the first RTP packet.",
    ),
    key(
        "timeouts",
        "ws_connect_secs",
        Float,
        "Consumer WebSocket connect (TCP, TLS, upgrade).",
    ),
    key(
        "media",
        "jitter_ms",
        Int,
        "Reorder window for late packets in ms (0 disables).",
    ),
    key(
        "media",
        "stall_secs",
        Float,
        "No RTP for this long: the stream is `stalled`.",
    ),
    key(
        "media",
        "reconnect_secs",
        Float,
        "No RTP for this long: WHEP is reconnected (SRS keeps a session whose publisher left).",
    ),
    optional(
        "redis",
        "url",
        Shown::Urls,
        "Redis of the cluster (redis:// or rediss://, password in the URL is never shown).\n\
         Unset: the node coordinates alone, in memory (same API, no takeover).",
        "\"redis://127.0.0.1:6379/0\"",
    ),
    key(
        "redis",
        "prefix",
        Str,
        "Prefix of every Redis key, so several deployments can share one Redis.",
    ),
    key(
        "redis",
        "lease_ttl_secs",
        Float,
        "Stream lease lifetime; owners renew every second, a dead node's streams move after it.",
    ),
    key(
        "redis",
        "timeout_secs",
        Float,
        "Bound on each Redis round trip and connection attempt (at most half the lease TTL).",
    ),
    key(
        "redis",
        "handover_after_secs",
        Float,
        "A stream whose WHEP peer or consumer local retries have not fixed for this long is\n\
         handed to another node (if one is not cooling down for it).",
    ),
    key(
        "redis",
        "cooldown_secs",
        Float,
        "How long a node stays away from a stream it handed over; doubled for each further\n\
         hand-over while a cooldown runs, up to cooldown_max_secs.",
    ),
    key(
        "redis",
        "cooldown_max_secs",
        Float,
        "Cap of the hand-over cooldown.",
    ),
];

/// The key named `section.name`.
pub fn find(key: &str) -> Option<&'static KeyDef> {
    let (section, name) = key.split_once('.')?;
    KEYS.iter().find(|d| d.section == section && d.name == name)
}

/// The key an environment variable sets, if it is one of ours.
pub fn find_env(var: &str) -> Option<&'static KeyDef> {
    KEYS.iter().find(|d| d.env_var() == var)
}

/// Names of `WHEP_BRIDGE_*` variables among `vars` that set no key (probably typos); for a
/// warning at start. They are not errors: other subcommands read some (e.g.
/// `WHEP_BRIDGE_WHEP_TOKEN` for `pull`).
pub fn unknown_env_vars<'a>(vars: impl IntoIterator<Item = &'a str>) -> Vec<String> {
    vars.into_iter()
        .filter(|v| v.starts_with("WHEP_BRIDGE_") && find_env(v).is_none())
        .map(str::to_owned)
        .collect()
}

/// The configuration file with every key, its documentation, environment variable and
/// default (optional keys commented out with an example). Loading it gives the defaults.
pub fn render_defaults() -> String {
    let defaults = toml::Table::try_from(NodeConfig::default()).unwrap_or_default();
    let mut out = String::from(
        "# whep-bridge serve configuration (TOML); every key is shown with its default.\n\
         # Precedence: this file < environment variables (WHEP_BRIDGE_<SECTION>_<KEY>)\n\
         # < command-line flags. Unknown keys and invalid values stop the node at start.\n",
    );
    let mut section = "";
    for def in KEYS {
        if def.section != section {
            section = def.section;
            out.push_str(&format!("\n[{section}]\n"));
        }
        for line in def.doc.lines() {
            out.push_str(&format!("# {}\n", line.trim()));
        }
        out.push_str(&format!("# env: {}\n", def.env_var()));
        let value = defaults.get(def.section).and_then(|s| s.get(def.name));
        match value {
            Some(v) => out.push_str(&format!("{} = {v}\n", def.name)),
            None => out.push_str(&format!("# {} = {}\n", def.name, def.example)),
        }
    }
    out
}

#[cfg(test)]
mod tests;
