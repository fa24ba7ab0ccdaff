//! Errors of the WHEP signalling layer, and the redaction helpers that keep secrets out of them.
//!
//! Every message names what happened and where (stage or redacted URL) so an operator can act on
//! it from a log line or the stream's `lastError` alone. URLs are stored already redacted: SRS
//! deployments carry tokens in query strings (`?token=…`, and the `Location` SRS returns holds a
//! session `token=…`), and errors end up in logs and in the HTTP API.

use std::time::Duration;

use url::Url;

/// Characters of an error body kept in [`WhepError::Status`].
pub const STATUS_BODY_CHARS: usize = 300;
/// Characters of a non-SDP body kept in [`WhepError::NotSdp`].
pub const SNIPPET_CHARS: usize = 200;

/// Why a WHEP (or SRS legacy play API) exchange failed.
#[derive(Debug, thiserror::Error)]
pub enum WhepError {
    /// The configured URL cannot be used (wrong scheme, no host, no app/stream, bad redirect
    /// target, …).
    #[error("invalid WHEP URL {url}: {reason}")]
    InvalidUrl { url: String, reason: String },

    /// No TCP/TLS connection could be made (DNS failure, refused, unreachable, TLS handshake).
    #[error("cannot connect to WHEP endpoint {url}: {reason}")]
    Connect { url: String, reason: String },

    /// The connection was closed (or reset) before any HTTP response arrived. This is how SRS
    /// reports most errors (unknown app, bad SDP, rejected by a hook…), so the server's own
    /// log is the place to look.
    #[error(
        "WHEP endpoint {url} closed the connection without an HTTP response \
         (SRS reports errors this way: check the server log)"
    )]
    NoResponse { url: String },

    /// A network wait did not finish in time.
    #[error("WHEP {stage} timed out after {after:?}")]
    Timeout {
        stage: &'static str,
        after: Duration,
    },

    /// The endpoint answered with an unexpected HTTP status.
    #[error("WHEP endpoint {url} answered HTTP {status}: {body:?}")]
    Status {
        status: u16,
        url: String,
        /// First [`STATUS_BODY_CHARS`] characters of the body, control characters and known
        /// secrets removed.
        body: String,
    },

    /// The success response does not carry SDP (e.g. a proxy's HTML login page).
    #[error(
        "WHEP answer is not SDP (content-type {}): {snippet:?}",
        content_type.as_deref().unwrap_or("missing")
    )]
    NotSdp {
        content_type: Option<String>,
        snippet: String,
    },

    /// The answer has no accepted audio section with Opus/48000, so no audio can flow.
    #[error(
        "WHEP answer has no usable audio: no sending m=audio section with a non-zero port \
         that accepts opus/48000"
    )]
    NoAudio,

    /// More redirects than configured (`max_redirects`), most likely a redirect loop.
    #[error("WHEP endpoint redirected more than max_redirects times (a redirect loop?)")]
    TooManyRedirects,

    /// The endpoint kept answering 409/503 with `Retry-After`.
    #[error("WHEP endpoint still answers HTTP {status} after {attempts} attempts")]
    RetryExhausted { status: u16, attempts: u32 },

    /// The SRS legacy play API (`/rtc/v1/play/`) answered with `code != 0`.
    #[error(
        "SRS play API refused the session with code {code} (see SRS error codes / server log)"
    )]
    SrsApi { code: i64 },

    /// The answer is SDP (or JSON) but unusable for another reason.
    #[error("bad WHEP answer: {0}")]
    BadAnswer(String),

    /// The peer sent something that is not a valid HTTP response (wrong port/service?).
    #[error("WHEP endpoint {url} sent a malformed HTTP response: {reason}")]
    Protocol { url: String, reason: String },

    /// The response head arrived but its body could not be read completely.
    #[error("reading the response body from {url} failed: {reason}")]
    BodyRead { url: String, reason: String },

    /// The request itself cannot be built (e.g. a bearer token with a newline in it).
    #[error("cannot build the WHEP request: {0}")]
    InvalidRequest(String),
}

impl WhepError {
    /// Whether trying the same request again later (with backoff) can succeed.
    ///
    /// - Network trouble (`Connect`, `NoResponse`, `Timeout`, `BodyRead`): the server may be
    ///   restarting or overloaded. `NoResponse` included because SRS reports transient and
    ///   permanent errors alike by closing the connection, and a backed-off retry is cheap.
    /// - HTTP 5xx, 408, 409, 425, 429 and exhausted 409/503 retries: the server said "not now".
    /// - `SrsApi`: SRS codes mix transient states (source busy, not ready) with permanent ones
    ///   and cannot be told apart reliably; the caller's capped backoff bounds the cost.
    /// - Everything else (other 4xx, non-SDP bodies, answers without audio, redirect loops,
    ///   malformed HTTP, bad URLs/requests) means a configuration or server problem that the
    ///   same request will hit again: retrying only hides it, so the caller should report it.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Connect { .. }
            | Self::NoResponse { .. }
            | Self::Timeout { .. }
            | Self::BodyRead { .. }
            | Self::RetryExhausted { .. }
            | Self::SrsApi { .. } => true,
            Self::Status { status, .. } => {
                *status >= 500 || matches!(*status, 408 | 409 | 425 | 429)
            }
            Self::InvalidUrl { .. }
            | Self::NotSdp { .. }
            | Self::NoAudio
            | Self::TooManyRedirects
            | Self::BadAnswer(_)
            | Self::Protocol { .. }
            | Self::InvalidRequest(_) => false,
        }
    }
}

/// Query keys whose values are secrets. Matched as substrings of the lower-cased key, so
/// `access_token`, `apiKey`, `X-Amz-Signature` or `passwd` are caught too.
const SECRET_KEY_PARTS: [&str; 7] = ["token", "secret", "auth", "key", "pass", "sig", "cred"];

/// Whether the value of query parameter `key` must not be shown.
pub fn is_secret_query_key(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    SECRET_KEY_PARTS.iter().any(|part| key.contains(part))
}

/// `url` as a string safe for logs and API output: the password of the userinfo, the values
/// of secret-looking query parameters (see [`is_secret_query_key`]) and the fragment are
/// replaced or dropped. Other query parameters (`app`, `stream`, …) stay, they are what an
/// operator needs to recognise the stream.
pub fn redact_url(url: &Url) -> String {
    let mut out = format!("{}://", url.scheme());
    if !url.username().is_empty() {
        out.push_str(url.username());
        if url.password().is_some() {
            out.push_str(":***");
        }
        out.push('@');
    }
    if let Some(host) = url.host_str() {
        out.push_str(host);
    }
    if let Some(port) = url.port() {
        out.push_str(&format!(":{port}"));
    }
    out.push_str(url.path());
    if let Some(query) = url.query() {
        out.push('?');
        out.push_str(&redact_query(query));
    }
    out
}

/// Redacts the values of secret-looking keys in a raw query string, keeping the rest byte for
/// byte.
fn redact_query(query: &str) -> String {
    query
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some((key, _)) if is_secret_query_key(key) => format!("{key}=***"),
            _ => pair.to_owned(),
        })
        .collect::<Vec<_>>()
        .join("&")
}

/// The raw values of secret-looking query parameters of `url`, to scrub them from bodies
/// that might echo them back.
pub fn query_secrets(url: &Url) -> Vec<String> {
    url.query()
        .into_iter()
        .flat_map(|q| q.split('&'))
        .filter_map(|pair| pair.split_once('='))
        .filter(|(key, value)| is_secret_query_key(key) && !value.is_empty())
        .map(|(_, value)| value.to_owned())
        .collect()
}

/// A short, printable excerpt of a response body for an error message: invalid UTF-8 replaced,
/// control characters and runs of whitespace folded to one space, each of `secrets` replaced by
/// `***`, cut to at most `max_chars` characters (an ellipsis marks the cut).
pub fn sanitize_snippet(body: &[u8], max_chars: usize, secrets: &[&str]) -> String {
    let mut text = String::from_utf8_lossy(body).into_owned();
    for secret in secrets.iter().filter(|s| s.len() >= 4) {
        text = text.replace(secret, "***");
    }
    let mut out = String::new();
    let mut count = 0;
    let mut last_space = true;
    for ch in text.chars() {
        let ch = if ch.is_control() || ch.is_whitespace() {
            ' '
        } else {
            ch
        };
        if ch == ' ' && last_space {
            continue;
        }
        last_space = ch == ' ';
        if count == max_chars {
            out.push('…');
            return out;
        }
        out.push(ch);
        count += 1;
    }
    out.trim_end().to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(s: &str) -> Url {
        Url::parse(s).unwrap()
    }

    #[test]
    fn redact_hides_secret_query_values_and_keeps_the_rest() {
        let u = url("http://srs:1985/rtc/v1/whip/?action=delete&token=abc123&app=live&stream=s1");
        assert_eq!(
            redact_url(&u),
            "http://srs:1985/rtc/v1/whip/?action=delete&token=***&app=live&stream=s1"
        );
        let u = url("https://h/x?access_token=1&apiKey=2&X-Amz-Signature=3&passwd=4&q=ok");
        let r = redact_url(&u);
        assert_eq!(
            r,
            "https://h/x?access_token=***&apiKey=***&X-Amz-Signature=***&passwd=***&q=ok"
        );
    }

    #[test]
    fn redact_hides_userinfo_password_and_fragment() {
        let u = url("http://user:hunter2@[::1]:8080/p#frag");
        let r = redact_url(&u);
        assert_eq!(r, "http://user:***@[::1]:8080/p");
        assert!(!r.contains("hunter2"));
    }

    #[test]
    fn query_secrets_lists_raw_values() {
        let u = url("http://h/?app=live&token=t0k3n&secret=&key=k%20y");
        assert_eq!(query_secrets(&u), vec!["t0k3n", "k%20y"]);
    }

    #[test]
    fn snippet_is_sanitized_cut_and_scrubbed() {
        let body = b"<html>\r\n\t<body>Bearer s3cr3t-token \x07 denied</body></html>";
        let s = sanitize_snippet(body, 300, &["s3cr3t-token"]);
        assert_eq!(s, "<html> <body>Bearer *** denied</body></html>");
        let long = "é".repeat(400);
        let s = sanitize_snippet(long.as_bytes(), 300, &[]);
        assert_eq!(s.chars().count(), 301);
        assert!(s.ends_with('…'));
        assert_eq!(
            sanitize_snippet(b"\xff\xfeok", 10, &[]),
            "\u{fffd}\u{fffd}ok"
        );
    }

    #[test]
    fn retryable_classification() {
        let status = |s| WhepError::Status {
            status: s,
            url: String::new(),
            body: String::new(),
        };
        assert!(status(500).is_retryable());
        assert!(status(503).is_retryable());
        assert!(status(409).is_retryable());
        assert!(status(429).is_retryable());
        assert!(!status(400).is_retryable());
        assert!(!status(401).is_retryable());
        assert!(!status(404).is_retryable());
        assert!(WhepError::NoResponse { url: String::new() }.is_retryable());
        assert!(WhepError::Timeout {
            stage: "x",
            after: Duration::from_secs(1)
        }
        .is_retryable());
        assert!(!WhepError::NoAudio.is_retryable());
        assert!(!WhepError::NotSdp {
            content_type: None,
            snippet: String::new()
        }
        .is_retryable());
        assert!(!WhepError::TooManyRedirects.is_retryable());
    }

    #[test]
    fn messages_name_the_place() {
        let e = WhepError::Status {
            status: 500,
            url: "http://srs:1985/rtc/v1/whep/?app=live&stream=s".into(),
            body: "oops".into(),
        };
        assert_eq!(
            e.to_string(),
            "WHEP endpoint http://srs:1985/rtc/v1/whep/?app=live&stream=s answered HTTP 500: \"oops\""
        );
        let e = WhepError::NotSdp {
            content_type: Some("text/html".into()),
            snippet: "<html>".into(),
        };
        assert_eq!(
            e.to_string(),
            "WHEP answer is not SDP (content-type text/html): \"<html>\""
        );
    }
}
