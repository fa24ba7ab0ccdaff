//! RFC 9457 problem details, the body of every API error (`application/problem+json`).
//!
//! Each error names the field at fault in the `field` extension member (a dotted camelCase
//! path such as `output.sampleRate`, `wsHeaders.Authorization` or `iceServers[0].urls[1]`), so
//! a client can point at the offending input without parsing `detail`. `type` is a URN per
//! kind of problem: stable, dereferenceable by nobody, documented here; RFC 9457 allows any URI.
//! No constructor ever receives secrets: callers pass messages that were redacted already.

use serde::Serialize;

/// Media type of a problem details body.
pub const CONTENT_TYPE: &str = "application/problem+json";

/// `type` URIs, one per kind of problem.
pub mod types {
    pub const INVALID_REQUEST: &str = "urn:whep-bridge:problem:invalid-request";
    pub const NOT_FOUND: &str = "urn:whep-bridge:problem:not-found";
    pub const CONFLICT: &str = "urn:whep-bridge:problem:stream-exists";
    pub const PAYLOAD_TOO_LARGE: &str = "urn:whep-bridge:problem:payload-too-large";
    pub const UNSUPPORTED_MEDIA_TYPE: &str = "urn:whep-bridge:problem:unsupported-media-type";
    pub const UNAUTHORIZED: &str = "urn:whep-bridge:problem:unauthorized";
    pub const INTERNAL: &str = "urn:whep-bridge:problem:internal";
    pub const UNAVAILABLE: &str = "urn:whep-bridge:problem:coordinator-unavailable";
    pub const DRAINING: &str = "urn:whep-bridge:problem:node-draining";
}

/// One RFC 9457 problem details object.
///
/// `type` and `title` are `&'static str` (always one of a fixed set): that keeps the struct
/// under clippy's `result_large_err` threshold, so `Result<_, Problem>` needs no boxing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    /// URI identifying the kind of problem (see [`types`]).
    #[serde(rename = "type")]
    pub type_: &'static str,
    /// Short summary of the kind of problem; the same for every occurrence of a `type`.
    pub title: &'static str,
    /// The HTTP status code of the response carrying this problem.
    pub status: u16,
    /// What went wrong in this occurrence, for a human.
    pub detail: String,
    /// The request path the problem is about (e.g. `/v1/streams/cam1`), when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub instance: Option<String>,
    /// Extension member: the input field at fault (dotted camelCase path).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

impl Problem {
    fn new(
        type_: &'static str,
        title: &'static str,
        status: u16,
        detail: impl Into<String>,
    ) -> Self {
        Self {
            type_,
            title,
            status,
            detail: detail.into(),
            instance: None,
            field: None,
        }
    }

    /// 400: the input is malformed or invalid; `field` names the offending input when the
    /// problem is about one field (None for e.g. malformed JSON as a whole).
    pub fn bad_request(field: Option<&str>, detail: impl Into<String>) -> Self {
        let mut p = Self::new(types::INVALID_REQUEST, "Invalid request", 400, detail);
        p.field = field.map(str::to_owned);
        p
    }

    /// 404: no stream with this id.
    pub fn not_found(stm_id: &str) -> Self {
        let mut p = Self::new(
            types::NOT_FOUND,
            "Stream not found",
            404,
            format!("no stream with stmId {stm_id:?}"),
        );
        p.field = Some("stmId".to_owned());
        p
    }

    /// 409: `POST` of a stream whose id exists (use `PUT` to replace it).
    pub fn conflict(stm_id: &str) -> Self {
        let mut p = Self::new(
            types::CONFLICT,
            "Stream already exists",
            409,
            format!(
                "a stream with stmId {stm_id:?} already exists \
                 (PUT /v1/streams/{{stmId}} replaces it)"
            ),
        );
        p.field = Some("stmId".to_owned());
        p
    }

    /// 503: the cluster coordinator cannot be reached; nothing was changed, retry later.
    pub fn unavailable(detail: impl Into<String>) -> Self {
        Self::new(types::UNAVAILABLE, "Coordinator unavailable", 503, detail)
    }

    /// 503: the node is shutting down and takes no new streams (another node will).
    pub fn draining() -> Self {
        Self::new(
            types::DRAINING,
            "Node shutting down",
            503,
            "this node is shutting down; send the request to another node",
        )
    }

    /// 413: the body is larger than the node accepts.
    pub fn payload_too_large(limit_bytes: usize) -> Self {
        Self::new(
            types::PAYLOAD_TOO_LARGE,
            "Request body too large",
            413,
            format!("the request body exceeds {limit_bytes} bytes"),
        )
    }

    /// 415: the body is not `application/json`.
    pub fn unsupported_media_type(got: Option<&str>) -> Self {
        let got = match got {
            Some(ct) => format!("{:?}", truncate(ct, 100)),
            None => "no Content-Type".to_owned(),
        };
        Self::new(
            types::UNSUPPORTED_MEDIA_TYPE,
            "Unsupported media type",
            415,
            format!("expected Content-Type application/json, got {got}"),
        )
    }

    /// 401: the API bearer token is missing or wrong (the response also needs
    /// `WWW-Authenticate: Bearer`). Never says which, nor echoes what was sent.
    pub fn unauthorized() -> Self {
        Self::new(
            types::UNAUTHORIZED,
            "Unauthorized",
            401,
            "a valid bearer token is required (Authorization: Bearer <token>)",
        )
    }

    /// 500: a bug or an unexpected internal state; `detail` must not leak secrets.
    pub fn internal(detail: impl Into<String>) -> Self {
        Self::new(types::INTERNAL, "Internal error", 500, detail)
    }

    /// The same problem, about request path `instance`.
    pub fn with_instance(mut self, instance: impl Into<String>) -> Self {
        self.instance = Some(instance.into());
        self
    }

    /// The body to send: compact JSON.
    pub fn to_json(&self) -> String {
        // Serializing a struct of strings and an integer cannot fail; keep a valid body anyway.
        serde_json::to_string(self).unwrap_or_else(|_| {
            format!(
                "{{\"type\":\"{}\",\"title\":\"Internal error\",\"status\":500,\"detail\":\"\"}}",
                types::INTERNAL
            )
        })
    }
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.field {
            Some(field) => write!(f, "{} ({}): {}", self.title, field, self.detail),
            None => write!(f, "{}: {}", self.title, self.detail),
        }
    }
}

impl std::error::Error for Problem {}

/// At most `max` characters of `s` (an ellipsis marks the cut), for echoing user input.
pub(crate) fn truncate(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_request_serializes_exactly() {
        let p = Problem::bad_request(Some("output.sampleRate"), "11025 Hz is not supported")
            .with_instance("/v1/streams");
        assert_eq!(
            p.to_json(),
            r#"{"type":"urn:whep-bridge:problem:invalid-request","title":"Invalid request","status":400,"detail":"11025 Hz is not supported","instance":"/v1/streams","field":"output.sampleRate"}"#
        );
    }

    #[test]
    fn optional_members_are_omitted() {
        let p = Problem::payload_too_large(65_536);
        assert_eq!(
            p.to_json(),
            r#"{"type":"urn:whep-bridge:problem:payload-too-large","title":"Request body too large","status":413,"detail":"the request body exceeds 65536 bytes"}"#
        );
    }

    #[test]
    fn statuses_and_fields_per_constructor() {
        let cases = [
            (Problem::not_found("cam1"), 404, Some("stmId")),
            (Problem::conflict("cam1"), 409, Some("stmId")),
            (
                Problem::unsupported_media_type(Some("text/plain")),
                415,
                None,
            ),
            (Problem::unsupported_media_type(None), 415, None),
            (Problem::unauthorized(), 401, None),
            (Problem::internal("boom"), 500, None),
            (Problem::bad_request(None, "x"), 400, None),
        ];
        for (p, status, field) in cases {
            assert_eq!(p.status, status, "{p}");
            assert_eq!(p.field.as_deref(), field, "{p}");
            assert!(p.type_.starts_with("urn:whep-bridge:problem:"));
        }
        assert!(Problem::not_found("cam1").detail.contains("\"cam1\""));
        assert!(Problem::conflict("cam1").detail.contains("PUT"));
        assert!(Problem::unsupported_media_type(Some("text/plain"))
            .detail
            .contains("text/plain"));
    }

    #[test]
    fn json_has_the_rfc_members() {
        let p = Problem::conflict("a.b:c");
        let v: serde_json::Value = serde_json::from_str(&p.to_json()).unwrap();
        assert_eq!(v["type"], types::CONFLICT);
        assert_eq!(v["title"], "Stream already exists");
        assert_eq!(v["status"], 409);
        assert_eq!(v["field"], "stmId");
        assert_eq!(v["detail"], p.detail);
        assert_eq!(v.as_object().unwrap().len(), 5);
    }

    #[test]
    fn small_enough_to_return_by_value() {
        assert!(std::mem::size_of::<Problem>() < 128);
    }

    #[test]
    fn truncate_cuts_on_char_boundaries() {
        assert_eq!(truncate("héllo", 2), "hé…");
        assert_eq!(truncate("abc", 3), "abc");
    }
}
