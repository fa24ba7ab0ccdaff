//! The stream spec as the API shows it: secrets replaced by `***` (SPEC §7 "no secrets in
//! logs or API output"). Header names stay (an operator needs to see *that* `Authorization`
//! is sent), their values do not; the WHEP token shows only whether one is set; ICE
//! credentials are masked (usernames stay: TURN REST usernames carry the expiry, useful when
//! debugging); URLs lose userinfo passwords and secret-looking query values.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::config::{IceServer, OutputFormat, StreamSpec};
use crate::whep::error::is_secret_query_key;

use super::{OutputRequest, StreamRequest, WsMode};

/// What replaces a secret.
pub const MASK: &str = "***";

/// A redacted stream spec for API responses (`GET /v1/streams[/{stmId}]`).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StreamView {
    pub stm_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trace_id: Option<String>,
    pub whep_url: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ws_url: Option<String>,
    /// Header names, each value [`MASK`].
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub ws_headers: BTreeMap<String, String>,
    /// [`MASK`] when a token is set.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub whep_token: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ice_servers: Option<Vec<IceServer>>,
    /// As requested (only the given fields) or resolved (all fields).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub output: Option<OutputRequest>,
}

impl StreamView {
    /// The request as received (unset fields stay unset).
    pub fn from_request(req: &StreamRequest) -> Self {
        Self {
            stm_id: req.stm_id.clone(),
            trace_id: req.trace_id.clone(),
            whep_url: redact_url_str(&req.whep_url),
            ws_url: req.ws_url.as_deref().map(redact_url_str),
            ws_headers: mask_headers(req.ws_headers.iter().flatten()),
            whep_token: req.whep_token.as_ref().map(|_| MASK.to_owned()),
            ice_servers: req.ice_servers.as_deref().map(mask_ice),
            output: req.output.clone(),
        }
    }

    /// The resolved spec the stream runs with (every field set).
    pub fn from_spec(spec: &StreamSpec, ws_mode: WsMode) -> Self {
        let OutputFormat {
            sample_rate,
            channels,
            chunk_ms,
            envelope,
        } = spec.output;
        Self {
            stm_id: spec.stm_id.clone(),
            trace_id: Some(spec.trace_id.clone()),
            whep_url: redact_url_str(&spec.whep_url),
            ws_url: Some(redact_url_str(&spec.ws_url)),
            ws_headers: mask_headers(spec.ws_headers.iter().map(|(k, v)| (k, v))),
            whep_token: spec.whep_token.as_ref().map(|_| MASK.to_owned()),
            ice_servers: Some(mask_ice(&spec.ice_servers)),
            output: Some(OutputRequest {
                sample_rate: Some(sample_rate),
                channels: Some(channels),
                chunk_ms: Some(chunk_ms),
                envelope: Some(envelope),
                ws_mode: Some(ws_mode),
            }),
        }
    }
}

fn mask_headers<'a>(
    headers: impl Iterator<Item = (&'a String, &'a String)>,
) -> BTreeMap<String, String> {
    headers.map(|(k, _)| (k.clone(), MASK.to_owned())).collect()
}

fn mask_ice(servers: &[IceServer]) -> Vec<IceServer> {
    servers
        .iter()
        .map(|s| IceServer {
            urls: s.urls.iter().map(|u| redact_url_str(u)).collect(),
            username: s.username.clone(),
            credential: s.credential.as_ref().map(|_| MASK.to_owned()),
        })
        .collect()
}

/// `url` with secrets removed, as written otherwise (no parsing/re-encoding, so `{stmId}`
/// templates and odd-but-valid URLs stay readable): the password of the userinfo and the
/// values of secret-looking query keys ([`is_secret_query_key`]) become `***`, the fragment is
/// dropped. Works on unparsable input too.
pub fn redact_url_str(url: &str) -> String {
    let url = url.split('#').next().unwrap_or_default();
    let (head, query) = match url.split_once('?') {
        Some((h, q)) => (h, Some(q)),
        None => (url, None),
    };
    let mut out = match head.split_once("://") {
        Some((scheme, rest)) => {
            let auth_end = rest.find('/').unwrap_or(rest.len());
            let (authority, path) = rest.split_at(auth_end);
            let authority = match authority.rsplit_once('@') {
                Some((userinfo, host)) => match userinfo.split_once(':') {
                    Some((user, _)) => format!("{user}:{MASK}@{host}"),
                    None => format!("{userinfo}@{host}"),
                },
                None => authority.to_owned(),
            };
            format!("{scheme}://{authority}{path}")
        }
        // `turn:user:pass@host` style (no `//`): hide everything before `@`'s password.
        None => match head.rsplit_once('@') {
            Some((userinfo, host)) => match userinfo.split_once(':') {
                Some((scheme, cred)) => match cred.split_once(':') {
                    Some((user, _)) => format!("{scheme}:{user}:{MASK}@{host}"),
                    None => format!("{scheme}:{cred}@{host}"),
                },
                None => format!("{userinfo}@{host}"),
            },
            None => head.to_owned(),
        },
    };
    if let Some(query) = query {
        out.push('?');
        let pairs: Vec<String> = query
            .split('&')
            .map(|pair| match pair.split_once('=') {
                Some((key, _)) if is_secret_query_key(key) => format!("{key}={MASK}"),
                _ => pair.to_owned(),
            })
            .collect();
        out.push_str(&pairs.join("&"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::spec::parse_stream_request;
    use crate::config::EnvelopeKind;

    #[test]
    fn urls_lose_passwords_secret_query_values_and_fragments() {
        assert_eq!(
            redact_url_str("http://u:pw@h:1985/rtc/v1/whep/?app=live&stream=s&token=abc#f"),
            "http://u:***@h:1985/rtc/v1/whep/?app=live&stream=s&token=***"
        );
        assert_eq!(
            redact_url_str("ws://h/{stmId}?traceId={traceId}&apiKey=k"),
            "ws://h/{stmId}?traceId={traceId}&apiKey=***"
        );
        assert_eq!(redact_url_str("webrtc://h/live/s"), "webrtc://h/live/s");
        assert_eq!(
            redact_url_str("turn:user:pw@h:3478"),
            "turn:user:***@h:3478"
        );
        assert_eq!(redact_url_str("garbage?secret=1"), "garbage?secret=***");
    }

    #[test]
    fn view_of_request_hides_every_secret() {
        let body = br#"{"stmId":"cam1","whepUrl":"http://h/whep?token=WHEPQ",
            "wsUrl":"wss://u:WSPASS@c/in?sig=WSSIG","wsHeaders":{"Authorization":"Bearer HDR"},
            "whepToken":"TOKEN","iceServers":[{"urls":["turn:t:3478"],"username":"user",
            "credential":"ICECRED"}],"output":{"envelope":"extended"}}"#;
        let req = parse_stream_request(body, None).unwrap();
        let json = serde_json::to_string(&StreamView::from_request(&req)).unwrap();
        for secret in ["WHEPQ", "WSPASS", "WSSIG", "HDR", "TOKEN", "ICECRED"] {
            assert!(!json.contains(secret), "{secret} leaked: {json}");
        }
        let v: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(v["wsHeaders"]["Authorization"], MASK);
        assert_eq!(v["whepToken"], MASK);
        assert_eq!(v["iceServers"][0]["credential"], MASK);
        assert_eq!(v["iceServers"][0]["username"], "user");
        assert_eq!(v["output"], serde_json::json!({"envelope": "extended"}));
        assert!(v.get("traceId").is_none());
    }

    #[test]
    fn view_of_spec_is_complete_and_redacted() {
        let spec = StreamSpec {
            stm_id: "s".into(),
            trace_id: "t".into(),
            whep_url: "webrtc://h/live/s?token=X1".into(),
            whep_token: None,
            ws_url: "ws://c/{stmId}".into(),
            ws_headers: vec![("X-Key".into(), "X2".into())],
            ice_servers: vec![],
            output: OutputFormat {
                envelope: EnvelopeKind::Binary,
                ..OutputFormat::default()
            },
            force_resample: false,
        };
        let v = serde_json::to_value(StreamView::from_spec(&spec, WsMode::Shared)).unwrap();
        assert_eq!(
            v,
            serde_json::json!({
                "stmId": "s", "traceId": "t", "whepUrl": "webrtc://h/live/s?token=***",
                "wsUrl": "ws://c/{stmId}", "wsHeaders": {"X-Key": "***"}, "iceServers": [],
                "output": {"sampleRate": 16000, "channels": 1, "chunkMs": 200,
                           "envelope": "binary", "wsMode": "shared"}
            })
        );
    }
}
