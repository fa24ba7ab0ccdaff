//! The stream spec as the API receives it (SPEC §5), its validation and its resolution
//! against the node's defaults into the [`StreamSpec`] a stream runs with.
//!
//! - [`parse_stream_request`] (in `parse.rs`): body bytes → [`StreamRequest`], or a
//!   [`Problem`] naming the field at fault.
//! - [`StreamRequest::validate`]: every value checked (`check.rs`), problems name the field.
//! - [`StreamRequest::resolve`]: fills what the request left out from [`NodeDefaults`].
//! - [`StreamView`] (`view.rs`): the redacted form for API output.
//! - `strict_json.rs`: JSON parsing that refuses duplicate keys.
//!
//! Field paths in problems are dotted camelCase: `stmId`, `output.sampleRate`,
//! `wsHeaders.Authorization`, `iceServers[0].urls[1]`.

pub mod check;
mod parse;
mod strict_json;
pub mod view;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::api::problem::Problem;
use crate::config::{derived_trace_id, EnvelopeKind, IceServer, OutputFormat, StreamSpec};

pub use parse::parse_stream_request;
pub use view::{redact_url_str, StreamView};

/// How streams reach their consumer (SPEC §4.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum WsMode {
    /// One WebSocket connection per stream; the URL may template `{stmId}`/`{traceId}`.
    #[default]
    PerStream,
    /// One connection per distinct URL per node, all its streams multiplexed on it.
    Shared,
}

/// A stream spec as `POST /v1/streams` / `PUT /v1/streams/{stmId}` receive it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct StreamRequest {
    /// `[A-Za-z0-9._:-]{1,128}`.
    pub stm_id: String,
    /// `http(s)://` WHEP endpoint or SRS `webrtc://host[:port]/app/stream`.
    pub whep_url: String,
    /// 1–128 characters of `[A-Za-z0-9._:-]`; 32 random hex digits when absent. A 32-hex id
    /// is used as the stream's OpenTelemetry trace id (SPEC §7); other forms are only carried
    /// in the messages.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace_id: Option<String>,
    /// `ws://` or `wss://`; the node default when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ws_url: Option<String>,
    /// Extra WebSocket handshake headers (e.g. `Authorization`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ws_headers: Option<BTreeMap<String, String>>,
    /// Bearer token for the WHEP endpoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub whep_token: Option<String>,
    /// Replaces the node's ICE servers when given (`[]` means none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ice_servers: Option<Vec<IceServer>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<OutputRequest>,
}

/// The `output` member: each field overrides the node default.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct OutputRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sample_rate: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channels: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chunk_ms: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub envelope: Option<EnvelopeKind>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ws_mode: Option<WsMode>,
}

impl OutputRequest {
    /// `base` with the fields this request sets replaced.
    pub fn apply(&self, base: OutputFormat) -> OutputFormat {
        OutputFormat {
            sample_rate: self.sample_rate.unwrap_or(base.sample_rate),
            channels: self.channels.unwrap_or(base.channels),
            chunk_ms: self.chunk_ms.unwrap_or(base.chunk_ms),
            envelope: self.envelope.unwrap_or(base.envelope),
        }
    }
}

/// What a node fills in when a request leaves it out (from the node configuration).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NodeDefaults {
    /// Consumer URL for requests without `wsUrl` (None: `wsUrl` is required).
    pub ws_url: Option<String>,
    /// Headers for the default consumer only (see [`StreamRequest::resolve`]).
    pub ws_headers: BTreeMap<String, String>,
    pub output: OutputFormat,
    pub ice_servers: Vec<IceServer>,
    pub ws_mode: WsMode,
}

/// `output.<field>` for a field name of [`OutputFormat::validate`].
fn output_problem((field, msg): (&str, String)) -> Problem {
    Problem::bad_request(Some(&format!("output.{field}")), msg)
}

impl StreamRequest {
    /// Checks every field; the problem names the first field at fault (status 400).
    pub fn validate(&self) -> Result<(), Problem> {
        let bad = |field: &str, msg: String| Problem::bad_request(Some(field), msg);
        check::check_id(&self.stm_id).map_err(|m| bad("stmId", m))?;
        check::check_whep_url(&self.whep_url).map_err(|m| bad("whepUrl", m))?;
        if let Some(t) = &self.trace_id {
            check::check_id(t).map_err(|m| bad("traceId", m))?;
        }
        if let Some(u) = &self.ws_url {
            check::check_ws_url(u).map_err(|m| bad("wsUrl", m))?;
        }
        for (name, value) in self.ws_headers.iter().flatten() {
            let field = format!("wsHeaders.{name}");
            check::check_header_name(name).map_err(|m| bad(&field, m))?;
            check::check_header_value(value).map_err(|m| bad(&field, m))?;
        }
        if let Some(t) = &self.whep_token {
            check::check_token(t).map_err(|m| bad("whepToken", m))?;
        }
        for (i, server) in self.ice_servers.iter().flatten().enumerate() {
            check::check_ice_server(server)
                .map_err(|(sub, m)| bad(&format!("iceServers[{i}].{sub}"), m))?;
        }
        if let Some(out) = &self.output {
            // The defaults are valid, so any error comes from a field the request set.
            out.apply(OutputFormat::default())
                .validate()
                .map_err(output_problem)?;
        }
        Ok(())
    }

    /// The spec the stream runs with, and its consumer connection mode.
    ///
    /// - `wsUrl`: the request's, else the node default; a problem on `wsUrl` when neither.
    /// - `wsHeaders`: the node's default headers are sent **only to the node's default
    ///   consumer** (they usually hold its credentials, which must not go to a URL a client
    ///   chose); there the request's headers are added, replacing same-named ones
    ///   (case-insensitively). With its own `wsUrl`, a request gets only its own headers.
    /// - `iceServers`: the request's list when given, else the node's.
    /// - `output`: each field given overrides the node default; `wsMode` likewise.
    /// - `traceId`: derived from `stmId` ([`derived_trace_id`]) when absent, so it is the same
    ///   on every node that runs the stream.
    pub fn resolve(self, defaults: &NodeDefaults) -> Result<(StreamSpec, WsMode), Problem> {
        self.validate()?;
        let request_headers = self.ws_headers.unwrap_or_default();
        let (ws_url, ws_headers) = match (self.ws_url, &defaults.ws_url) {
            (Some(url), _) => (url, request_headers.into_iter().collect()),
            (None, Some(url)) => {
                let mut headers: Vec<(String, String)> = defaults
                    .ws_headers
                    .iter()
                    .filter(|(k, _)| !request_headers.keys().any(|r| r.eq_ignore_ascii_case(k)))
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect();
                headers.extend(request_headers);
                (url.clone(), headers)
            }
            (None, None) => {
                return Err(Problem::bad_request(
                    Some("wsUrl"),
                    "wsUrl is required: this node has no default consumer URL",
                ))
            }
        };
        let out = self.output.unwrap_or_default();
        let output = out.apply(defaults.output);
        output.validate().map_err(output_problem)?;
        let trace_id = self
            .trace_id
            .unwrap_or_else(|| derived_trace_id(&self.stm_id));
        let spec = StreamSpec {
            stm_id: self.stm_id,
            trace_id,
            whep_url: self.whep_url,
            whep_token: self.whep_token,
            ws_url,
            ws_headers,
            ice_servers: self
                .ice_servers
                .unwrap_or_else(|| defaults.ice_servers.clone()),
            output,
            force_resample: false,
        };
        Ok((spec, out.ws_mode.unwrap_or(defaults.ws_mode)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(json: &str) -> StreamRequest {
        parse_stream_request(json.as_bytes(), None).unwrap()
    }

    fn defaults() -> NodeDefaults {
        NodeDefaults {
            ws_url: Some("ws://127.0.0.1:9000/in/{stmId}".into()),
            ws_headers: [
                ("Authorization".to_string(), "Bearer node".to_string()),
                ("X-Node".to_string(), "n1".to_string()),
            ]
            .into(),
            output: OutputFormat {
                sample_rate: 48_000,
                ..OutputFormat::default()
            },
            ice_servers: vec![IceServer {
                urls: vec!["stun:s:3478".into()],
                ..IceServer::default()
            }],
            ws_mode: WsMode::Shared,
        }
    }

    #[test]
    fn minimal_request_takes_node_defaults() {
        let (spec, mode) = req(r#"{"stmId":"a","whepUrl":"http://h/whep/a"}"#)
            .resolve(&defaults())
            .unwrap();
        assert_eq!(spec.ws_url, "ws://127.0.0.1:9000/in/{stmId}");
        assert_eq!(spec.ws_headers.len(), 2);
        assert_eq!(spec.output.sample_rate, 48_000);
        assert_eq!(spec.ice_servers, defaults().ice_servers);
        assert_eq!(mode, WsMode::Shared);
        assert_eq!(spec.trace_id.len(), 32);
        assert!(spec.trace_id.chars().all(|c| c.is_ascii_hexdigit()));
        assert!(spec.whep_token.is_none());
        // Every node derives the same trace id for the stream; another stream gets another.
        let again = req(r#"{"stmId":"a","whepUrl":"http://h/whep/other"}"#)
            .resolve(&defaults())
            .unwrap()
            .0;
        assert_eq!(again.trace_id, spec.trace_id);
        let b = req(r#"{"stmId":"b","whepUrl":"http://h/whep/a"}"#)
            .resolve(&defaults())
            .unwrap()
            .0;
        assert_ne!(b.trace_id, spec.trace_id);
    }

    #[test]
    fn request_fields_override_defaults() {
        let (spec, mode) = req(r#"{"stmId":"a","whepUrl":"http://h/whep/a","traceId":"t1",
            "wsHeaders":{"authorization":"Bearer mine"},"iceServers":[],
            "output":{"channels":2,"chunkMs":100,"envelope":"binary","wsMode":"per-stream"}}"#)
        .resolve(&defaults())
        .unwrap();
        assert_eq!(spec.trace_id, "t1");
        // Default consumer: node headers plus the request's, same name replaced.
        let mut headers = spec.ws_headers.clone();
        headers.sort();
        assert_eq!(
            headers,
            vec![
                ("X-Node".to_string(), "n1".to_string()),
                ("authorization".to_string(), "Bearer mine".to_string()),
            ]
        );
        assert!(spec.ice_servers.is_empty());
        assert_eq!(
            spec.output,
            OutputFormat {
                sample_rate: 48_000,
                channels: 2,
                chunk_ms: 100,
                envelope: EnvelopeKind::Binary
            }
        );
        assert_eq!(mode, WsMode::PerStream);
    }

    #[test]
    fn own_ws_url_never_gets_the_node_headers() {
        let (spec, _) = req(r#"{"stmId":"a","whepUrl":"http://h/w","wsUrl":"wss://other/x"}"#)
            .resolve(&defaults())
            .unwrap();
        assert_eq!(spec.ws_url, "wss://other/x");
        assert!(spec.ws_headers.is_empty());
    }

    #[test]
    fn ws_url_required_without_node_default() {
        let p = req(r#"{"stmId":"a","whepUrl":"http://h/w"}"#)
            .resolve(&NodeDefaults::default())
            .unwrap_err();
        assert_eq!((p.status, p.field.as_deref()), (400, Some("wsUrl")));
    }

    #[test]
    fn resolve_rechecks_the_merged_output() {
        // A constructed (not parsed) request is validated by resolve too.
        let r = StreamRequest {
            output: Some(OutputRequest {
                chunk_ms: Some(7),
                ..OutputRequest::default()
            }),
            ..req(r#"{"stmId":"a","whepUrl":"http://h/w"}"#)
        };
        let p = r.resolve(&defaults()).unwrap_err();
        assert_eq!(p.field.as_deref(), Some("output.chunkMs"));
    }

    #[test]
    fn ws_mode_spelling() {
        assert_eq!(
            serde_json::to_string(&WsMode::PerStream).unwrap(),
            "\"per-stream\""
        );
        assert_eq!(
            serde_json::from_str::<WsMode>("\"shared\"").unwrap(),
            WsMode::Shared
        );
        assert_eq!(WsMode::default(), WsMode::PerStream);
    }
}
