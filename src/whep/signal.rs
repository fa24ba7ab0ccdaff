//! The WHEP HTTP exchange (SPEC §3): POST the offer, follow redirects, honour `Retry-After`,
//! check the answer, DELETE the session; plus SRS's legacy `/rtc/v1/play/` JSON API.
//!
//! Runs on an actix (tokio current-thread + `LocalSet`) runtime: `awc::Client` is `!Send`.
//!
//! Choices worth knowing:
//! - Every request carries `Connection: close`. A signalling exchange happens once per
//!   session, so pooling gains nothing, and a pooled connection the server closed meanwhile
//!   would be indistinguishable from SRS's way of reporting errors (closing the connection
//!   without a response, [`WhepError::NoResponse`]).
//! - awc's own redirect middleware is off: it would not re-POST the body and hides the final
//!   URL, which the relative `Location` must be joined against. 307/308 are followed, as WHEP
//!   requires, and so are 301/302: a WHEP endpoint moved behind an http→https redirect usually
//!   answers 301/302, and re-POSTing the offer (allowed by RFC 9110 §15.4.2/3) is the only
//!   useful reading, a GET means nothing to a WHEP endpoint. 303 ("see other") is not
//!   followed: it points at a result document, not at an endpoint, so it is an error.
//!   The bearer token is never sent over a redirect from https to plain http.
//! - `cfg.timeout` bounds each HTTP exchange (DNS, TCP, TLS, request, response head and body)
//!   with one deadline. A `Retry-After` wait is bounded by `cfg.max_retry_after` instead, so
//!   the worst case of [`post_offer`] is
//!   `(1 + max_redirects + max_retries) × timeout + max_retries × max_retry_after`.
//!
//! awc errors (awc 3.11 / actix-http 3, checked against real sockets in `tests/whep_signal.rs`):
//! - connection closed (FIN) before any response byte: `Connect(ConnectError::Disconnected)`
//!   (the H1 response-head read returns end of stream) → [`WhepError::NoResponse`];
//! - reset (RST) while waiting for the response: `Response(ParseError::Io(ConnectionReset))`,
//!   reset while sending: `Send(io)`; closed after a partial head:
//!   `Response(ParseError::Io(Other "bytes remaining on stream"))` → all [`WhepError::NoResponse`];
//! - garbage instead of HTTP: `Response(ParseError::Version|Status|Header…)` →
//!   [`WhepError::Protocol`];
//! - refused / unreachable / DNS / TLS handshake: `Connect(ConnectError::Io|Resolver|NoRecords…)`
//!   → [`WhepError::Connect`].

use std::{
    fmt,
    time::{Duration, Instant, SystemTime},
};

// awc does not re-export actix-http's `ParseError`; actix-web does (same crate, same type).
use actix_web::error::ParseError;
use awc::{
    error::{ConnectError, PayloadError, SendRequestError},
    http::{
        header::{self, HeaderMap, HeaderValue},
        Method, StatusCode,
    },
};
use bytes::Bytes;
use serde::Deserialize;
use url::Url;

use crate::config::{IceServer, Timeouts};

use super::{
    error::{
        query_secrets, redact_url, sanitize_snippet, WhepError, SNIPPET_CHARS, STATUS_BODY_CHARS,
    },
    sdp::{check_answer, parse_link_ice_servers, AnswerInfo},
    url::join_location,
};

/// Largest answer body accepted. SRS answers are ~1–3 KiB; a big body means something else
/// (a web page, a proxy error) and must not be buffered without bound.
pub const MAX_ANSWER_BYTES: usize = 256 * 1024;

/// Largest error body read (only its first [`STATUS_BODY_CHARS`] characters are kept).
const MAX_ERROR_BODY_BYTES: usize = 64 * 1024;

/// awc's connector timeouts (TCP connect incl. DNS, TLS handshake). Set high on purpose: the
/// per-exchange deadline of [`SignalConfig::timeout`] is the one that should fire.
const CONNECTOR_TIMEOUT: Duration = Duration::from_secs(120);

/// How one signalling exchange behaves.
#[derive(Clone, PartialEq, Eq)]
pub struct SignalConfig {
    /// Sent as `Authorization: Bearer …` when set (SPEC §3, stream spec `whepToken`).
    pub bearer_token: Option<String>,
    /// Bound of one whole HTTP exchange: connect, request, response head and body.
    pub timeout: Duration,
    /// Redirects followed before giving up with [`WhepError::TooManyRedirects`].
    pub max_redirects: u8,
    /// Retries after 409/503 responses that carry `Retry-After`.
    pub max_retries: u8,
    /// Cap on one `Retry-After` wait, so a server cannot park the client for hours.
    pub max_retry_after: Duration,
    /// W3C `traceparent` of the stream's trace (SPEC §7), sent on the POST.
    pub traceparent: Option<String>,
    /// `User-Agent` sent on every request (see [`crate::config::user_agent`]).
    pub user_agent: Option<String>,
}

impl Default for SignalConfig {
    fn default() -> Self {
        Self {
            bearer_token: None,
            timeout: Duration::from_secs(10),
            max_redirects: 5,
            max_retries: 3,
            max_retry_after: Duration::from_secs(10),
            traceparent: None,
            user_agent: None,
        }
    }
}

impl SignalConfig {
    /// Defaults with the HTTP timeout of the shared [`Timeouts`].
    pub fn from_timeouts(timeouts: &Timeouts) -> Self {
        Self {
            timeout: timeouts.http,
            ..Self::default()
        }
    }
}

/// Hides the bearer token: configs get logged.
impl fmt::Debug for SignalConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SignalConfig")
            .field("bearer_token", &self.bearer_token.as_ref().map(|_| "***"))
            .field("timeout", &self.timeout)
            .field("max_redirects", &self.max_redirects)
            .field("max_retries", &self.max_retries)
            .field("max_retry_after", &self.max_retry_after)
            .field("traceparent", &self.traceparent)
            .field("user_agent", &self.user_agent)
            .finish()
    }
}

/// A successful offer/answer exchange.
#[derive(Clone, PartialEq, Eq)]
pub struct WhepAnswer {
    /// The SDP answer, as received.
    pub sdp: String,
    /// The session resource to DELETE on teardown (the `Location`, joined against
    /// `endpoint`); `None` when the server sent none (and for the SRS legacy API, which has
    /// no teardown: SRS drops the session 30 s after the client goes silent).
    pub resource: Option<Url>,
    /// ICE servers announced in `Link: rel="ice-server"` headers.
    pub ice_servers: Vec<IceServer>,
    /// The URL that answered, after redirects.
    pub endpoint: Url,
    /// What the answer says about the session.
    pub info: AnswerInfo,
}

/// Redacts the URLs (SRS's `Location` holds a session token) and TURN credentials.
impl fmt::Debug for WhepAnswer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WhepAnswer")
            .field("sdp_bytes", &self.sdp.len())
            .field("resource", &self.resource.as_ref().map(redact_url))
            .field(
                "ice_servers",
                &self.ice_servers.iter().map(|s| &s.urls).collect::<Vec<_>>(),
            )
            .field("endpoint", &redact_url(&self.endpoint))
            .field("info", &self.info)
            .finish()
    }
}

/// The HTTP client for signalling: rustls with the webpki roots, no automatic redirects (we
/// follow them by hand, see the module docs), no client-wide timeout (each exchange has its
/// own deadline). Cheap to clone; create one per arbiter.
pub fn http_client() -> awc::Client {
    // awc's connector builds a rustls config from the process-wide crypto provider and panics
    // if none can be chosen; install ring (the one the crate enables) unless one already is.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let connector = awc::Connector::new()
        .timeout(CONNECTOR_TIMEOUT)
        .handshake_timeout(CONNECTOR_TIMEOUT);
    awc::Client::builder()
        .connector(connector)
        .disable_redirects()
        .disable_timeout()
        .finish()
}

/// POSTs `offer_sdp` to the WHEP `endpoint` and returns the checked answer.
///
/// Expects 201 (200 accepted) with an SDP body; follows 301/302/307/308 up to
/// `cfg.max_redirects` (re-POSTing the same offer); waits and retries on 409/503 with
/// `Retry-After` up to `cfg.max_retries`; any other status is [`WhepError::Status`].
pub async fn post_offer(
    client: &awc::Client,
    endpoint: &Url,
    offer_sdp: &str,
    cfg: &SignalConfig,
) -> Result<WhepAnswer, WhepError> {
    let request = Request {
        method: Method::POST,
        content_type: Some("application/sdp"),
        accept: "application/sdp",
        body: Bytes::copy_from_slice(offer_sdp.as_bytes()),
        head_stage: "offer POST (connect + response headers)",
        body_stage: "answer body",
        body_limit: MAX_ANSWER_BYTES,
    };
    let reply = send_following(client, endpoint, &request, cfg).await?;
    if !matches!(reply.status, StatusCode::CREATED | StatusCode::OK) {
        return Err(reply.status_error(cfg));
    }
    let content_type = header_string(&reply.headers, &header::CONTENT_TYPE);
    // A body that is not UTF-8 is certainly not SDP.
    let sdp = String::from_utf8(reply.body.to_vec())
        .map_err(|_| reply.not_sdp(content_type.clone(), cfg))?;
    let info = check_answer(&sdp).map_err(|e| match e {
        WhepError::NotSdp { .. } => reply.not_sdp(content_type.clone(), cfg),
        other => other,
    })?;
    if content_type.as_deref().map(media_type).as_deref() != Some("application/sdp") {
        tracing::warn!(
            content_type = content_type.as_deref().unwrap_or("missing"),
            endpoint = %redact_url(&reply.url),
            "WHEP answer is SDP but not labelled application/sdp"
        );
    }
    let resource = match header_string(&reply.headers, &header::LOCATION) {
        Some(location) => match join_location(&reply.url, &location) {
            Ok(resource) => Some(resource),
            Err(e) => {
                tracing::warn!(
                    error = %e,
                    "WHEP answer has an unusable Location; the session cannot be deleted"
                );
                None
            }
        },
        None => {
            tracing::warn!(
                endpoint = %redact_url(&reply.url),
                "WHEP answer has no Location; the session cannot be deleted"
            );
            None
        }
    };
    let ice_servers = parse_link_ice_servers(
        reply
            .headers
            .get_all(header::LINK)
            .filter_map(|v| v.to_str().ok()),
    );
    tracing::debug!(
        endpoint = %redact_url(&reply.url),
        status = reply.status.as_u16(),
        ice_lite = info.ice_lite,
        candidates = info.candidates,
        "WHEP answer received"
    );
    Ok(WhepAnswer {
        sdp,
        resource,
        ice_servers,
        endpoint: reply.url,
        info,
    })
}

/// DELETEs the WHEP session `resource` (teardown). 2xx and 404 (already gone, e.g. SRS
/// dropped it) are success. Redirects are not followed: a teardown is best effort.
pub async fn delete_resource(
    client: &awc::Client,
    resource: &Url,
    cfg: &SignalConfig,
) -> Result<(), WhepError> {
    let request = Request {
        method: Method::DELETE,
        content_type: None,
        accept: "*/*",
        body: Bytes::new(),
        head_stage: "session DELETE (connect + response headers)",
        body_stage: "session DELETE response body",
        body_limit: MAX_ERROR_BODY_BYTES,
    };
    let (response, deadline) = send_once(client, resource, &request, cfg).await?;
    let status = response.status();
    if status.is_success() || status == StatusCode::NOT_FOUND {
        return Ok(());
    }
    let reply = read_reply(resource.clone(), response, deadline, &request, cfg).await?;
    Err(reply.status_error(cfg))
}

/// The JSON body of the SRS legacy play API.
#[derive(serde::Serialize)]
struct PlayRequest<'a> {
    api: &'a str,
    streamurl: &'a str,
    sdp: &'a str,
}

/// The JSON answer of the SRS legacy play API.
#[derive(Deserialize)]
struct PlayReply {
    code: i64,
    #[serde(default)]
    sdp: Option<String>,
    #[serde(default)]
    sessionid: Option<String>,
}

/// The SRS legacy play API: POST `{api, streamurl, sdp}` as JSON to `api` (from
/// [`super::url::srs_play_request`]), get `{code, sdp, sessionid}`. `code != 0` is
/// [`WhepError::SrsApi`]. Redirects and `Retry-After` are handled as for [`post_offer`].
/// The answer has no `resource`: the legacy API has no teardown.
pub async fn srs_play(
    client: &awc::Client,
    api: &Url,
    streamurl: &str,
    offer_sdp: &str,
    cfg: &SignalConfig,
) -> Result<WhepAnswer, WhepError> {
    let body = serde_json::to_vec(&PlayRequest {
        api: api.as_str(),
        streamurl,
        sdp: offer_sdp,
    })
    .map_err(|e| WhepError::InvalidRequest(format!("cannot encode the play request: {e}")))?;
    let request = Request {
        method: Method::POST,
        content_type: Some("application/json"),
        accept: "application/json",
        body: Bytes::from(body),
        head_stage: "SRS play API POST (connect + response headers)",
        body_stage: "SRS play API response body",
        body_limit: MAX_ANSWER_BYTES,
    };
    let reply = send_following(client, api, &request, cfg).await?;
    if !reply.status.is_success() {
        return Err(reply.status_error(cfg));
    }
    let content_type = header_string(&reply.headers, &header::CONTENT_TYPE);
    let text = String::from_utf8_lossy(&reply.body);
    if !text.trim_start().starts_with('{') {
        return Err(reply.not_sdp(content_type, cfg));
    }
    let play: PlayReply = serde_json::from_str(&text)
        .map_err(|e| WhepError::BadAnswer(format!("SRS play API answered unparsable JSON: {e}")))?;
    if play.code != 0 {
        return Err(WhepError::SrsApi { code: play.code });
    }
    let sdp = play
        .sdp
        .filter(|s| !s.is_empty())
        .ok_or_else(|| WhepError::BadAnswer("SRS play API answered code 0 without sdp".into()))?;
    let info = check_answer(&sdp)?;
    tracing::debug!(
        api = %redact_url(&reply.url),
        sessionid = play.sessionid.as_deref().unwrap_or(""),
        "SRS play API answer received"
    );
    Ok(WhepAnswer {
        sdp,
        resource: None,
        ice_servers: Vec::new(),
        endpoint: reply.url,
        info,
    })
}

/// One kind of request: what to send and how its waits are named in timeouts.
struct Request {
    method: Method,
    content_type: Option<&'static str>,
    accept: &'static str,
    body: Bytes,
    head_stage: &'static str,
    body_stage: &'static str,
    body_limit: usize,
}

/// A complete response.
struct Reply {
    /// The URL that produced it.
    url: Url,
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
}

impl Reply {
    /// Strings that must not appear in errors: the bearer token and secret query values of
    /// the URL (a server may echo them back in an error page).
    fn secrets(&self, cfg: &SignalConfig) -> Vec<String> {
        let mut secrets = query_secrets(&self.url);
        secrets.extend(cfg.bearer_token.clone());
        secrets
    }

    /// A [`WhepError::Status`] with a sanitized excerpt of the body (secrets scrubbed).
    fn status_error(&self, cfg: &SignalConfig) -> WhepError {
        let secrets = self.secrets(cfg);
        let secrets: Vec<&str> = secrets.iter().map(String::as_str).collect();
        WhepError::Status {
            status: self.status.as_u16(),
            url: redact_url(&self.url),
            body: sanitize_snippet(&self.body, STATUS_BODY_CHARS, &secrets),
        }
    }

    /// A [`WhepError::NotSdp`] for this reply's body, secrets scrubbed.
    fn not_sdp(&self, content_type: Option<String>, cfg: &SignalConfig) -> WhepError {
        let secrets = self.secrets(cfg);
        let secrets: Vec<&str> = secrets.iter().map(String::as_str).collect();
        WhepError::NotSdp {
            content_type,
            snippet: sanitize_snippet(&self.body, SNIPPET_CHARS, &secrets),
        }
    }
}

/// Sends `request`, following redirects and `Retry-After` as the module docs describe, and
/// returns the first response that is neither.
async fn send_following(
    client: &awc::Client,
    endpoint: &Url,
    request: &Request,
    cfg: &SignalConfig,
) -> Result<Reply, WhepError> {
    let mut url = endpoint.clone();
    let mut redirects = 0u8;
    let mut retries = 0u8;
    loop {
        let (response, deadline) = send_once(client, &url, request, cfg).await?;
        let status = response.status();
        if matches!(status.as_u16(), 301 | 302 | 307 | 308) {
            if redirects >= cfg.max_redirects {
                return Err(WhepError::TooManyRedirects);
            }
            redirects += 1;
            let location =
                header_string(response.headers(), &header::LOCATION).ok_or_else(|| {
                    WhepError::BadAnswer(format!(
                        "HTTP {} redirect from {} has no Location header",
                        status.as_u16(),
                        redact_url(&url)
                    ))
                })?;
            let next = join_location(&url, &location)?;
            check_redirect(&url, &next, cfg.bearer_token.is_some())?;
            tracing::debug!(
                status = status.as_u16(),
                from = %redact_url(&url),
                to = %redact_url(&next),
                "following WHEP redirect"
            );
            url = next;
            continue;
        }
        if matches!(status.as_u16(), 409 | 503) && cfg.max_retries > 0 {
            if let Some(wait) = retry_after(response.headers(), SystemTime::now()) {
                if retries >= cfg.max_retries {
                    return Err(WhepError::RetryExhausted {
                        status: status.as_u16(),
                        attempts: u32::from(retries) + 1,
                    });
                }
                retries += 1;
                let wait = wait.min(cfg.max_retry_after);
                drop(response);
                tracing::info!(
                    status = status.as_u16(),
                    endpoint = %redact_url(&url),
                    wait_ms = wait.as_millis() as u64,
                    retry = retries,
                    "WHEP endpoint busy, retrying after Retry-After"
                );
                actix_rt::time::sleep(wait).await;
                continue;
            }
        }
        return read_reply(url, response, deadline, request, cfg).await;
    }
}

/// Refuses a redirect that would send the bearer token in clear text (https → http).
/// Cross-host redirects are allowed with the token: WHEP uses 307 to spread sessions over the
/// nodes of one deployment, which share the token.
fn check_redirect(from: &Url, to: &Url, has_token: bool) -> Result<(), WhepError> {
    if has_token && from.scheme() == "https" && to.scheme() == "http" {
        return Err(WhepError::InvalidUrl {
            url: redact_url(to),
            reason: "refusing to follow a redirect from https to plain http with a bearer token"
                .to_owned(),
        });
    }
    Ok(())
}

/// Sends one request and waits for the response head. Returns the response and the
/// exchange's deadline, which the body read must also respect.
async fn send_once(
    client: &awc::Client,
    url: &Url,
    request: &Request,
    cfg: &SignalConfig,
) -> Result<(awc::ClientResponse, tokio::time::Instant), WhepError> {
    let started = Instant::now();
    let deadline = tokio::time::Instant::now() + cfg.timeout;
    let mut builder = client
        .request(request.method.clone(), url.as_str())
        .force_close()
        .insert_header((header::ACCEPT, request.accept));
    if let Some(content_type) = request.content_type {
        builder = builder.insert_header((header::CONTENT_TYPE, content_type));
    }
    if let Some(token) = &cfg.bearer_token {
        let value = HeaderValue::from_str(&format!("Bearer {token}")).map_err(|_| {
            WhepError::InvalidRequest(
                "the bearer token contains characters not allowed in an HTTP header".to_owned(),
            )
        })?;
        builder = builder.insert_header((header::AUTHORIZATION, value));
    }
    if let Some(agent) = cfg
        .user_agent
        .as_deref()
        .and_then(|a| HeaderValue::from_str(a).ok())
    {
        builder = builder.insert_header((header::USER_AGENT, agent));
    }
    if let Some(traceparent) = &cfg.traceparent {
        let value = HeaderValue::from_str(traceparent).map_err(|_| {
            WhepError::InvalidRequest(format!("invalid traceparent {traceparent:?}"))
        })?;
        builder = builder.insert_header((header::HeaderName::from_static("traceparent"), value));
    }
    let sent = tokio::time::timeout_at(deadline, builder.send_body(request.body.clone())).await;
    match sent {
        Ok(Ok(response)) => Ok((response, deadline)),
        Ok(Err(e)) => Err(map_send_error(e, url, request, started.elapsed())),
        Err(_) => Err(WhepError::Timeout {
            stage: request.head_stage,
            after: cfg.timeout,
        }),
    }
}

/// Reads the body of `response` within `deadline`.
///
/// For a success status a body that cannot be read is an error. For an error status the
/// status is what matters: an unreadable body becomes a note in the error instead.
async fn read_reply(
    url: Url,
    mut response: awc::ClientResponse,
    deadline: tokio::time::Instant,
    request: &Request,
    cfg: &SignalConfig,
) -> Result<Reply, WhepError> {
    let status = response.status();
    let limit = if status.is_success() {
        request.body_limit
    } else {
        MAX_ERROR_BODY_BYTES
    };
    let read = tokio::time::timeout_at(deadline, response.body().limit(limit)).await;
    let body = match (read, status.is_success()) {
        (Ok(Ok(body)), _) => body,
        (Ok(Err(e)), true) => return Err(map_payload_error(e, &url, limit)),
        (Err(_), true) => {
            return Err(WhepError::Timeout {
                stage: request.body_stage,
                after: cfg.timeout,
            })
        }
        (Ok(Err(e)), false) => Bytes::from(format!("(body unreadable: {e})")),
        (Err(_), false) => Bytes::from_static(b"(body not received in time)"),
    };
    Ok(Reply {
        url,
        status,
        headers: response.headers().clone(),
        body,
    })
}

/// Maps awc's send errors (see the module docs for what each case means on the wire).
fn map_send_error(
    e: SendRequestError,
    url: &Url,
    request: &Request,
    elapsed: Duration,
) -> WhepError {
    let redacted = redact_url(url);
    let connect = |reason: String| WhepError::Connect {
        url: redacted.clone(),
        reason,
    };
    match e {
        SendRequestError::Url(e) => WhepError::InvalidUrl {
            url: redacted,
            reason: e.to_string(),
        },
        SendRequestError::Connect(ConnectError::Disconnected) => {
            WhepError::NoResponse { url: redacted }
        }
        SendRequestError::Connect(ConnectError::Timeout) => WhepError::Timeout {
            stage: "connect",
            after: elapsed,
        },
        SendRequestError::Connect(ConnectError::Resolver(e)) => {
            connect(format!("DNS resolution failed: {e}"))
        }
        SendRequestError::Connect(ConnectError::NoRecords) => {
            connect("DNS has no address for the host".to_owned())
        }
        SendRequestError::Connect(ConnectError::Io(e)) => connect(e.to_string()),
        SendRequestError::Connect(e) => connect(e.to_string()),
        SendRequestError::Send(_) => WhepError::NoResponse { url: redacted },
        SendRequestError::Response(ParseError::Io(_)) => WhepError::NoResponse { url: redacted },
        SendRequestError::Timeout => WhepError::Timeout {
            stage: request.head_stage,
            after: elapsed,
        },
        SendRequestError::Http(e) => WhepError::InvalidRequest(e.to_string()),
        other => WhepError::Protocol {
            url: redacted,
            reason: other.to_string(),
        },
    }
}

fn map_payload_error(e: PayloadError, url: &Url, limit: usize) -> WhepError {
    match e {
        PayloadError::Overflow => WhepError::BadAnswer(format!(
            "response body from {} is larger than {limit} bytes",
            redact_url(url)
        )),
        PayloadError::UnknownLength => WhepError::Protocol {
            url: redact_url(url),
            reason: "invalid Content-Length".to_owned(),
        },
        other => WhepError::BodyRead {
            url: redact_url(url),
            reason: other.to_string(),
        },
    }
}

/// `type/subtype` of a Content-Type value, lower-cased, without parameters.
fn media_type(content_type: &str) -> String {
    content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase()
}

/// A header as text (invalid UTF-8 replaced), if present.
fn header_string(headers: &HeaderMap, name: &header::HeaderName) -> Option<String> {
    headers
        .get(name)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
}

/// The wait a `Retry-After` header asks for: delay-seconds or an HTTP date (a date in the past
/// means "now"). `None` when absent or unparsable.
fn retry_after(headers: &HeaderMap, now: SystemTime) -> Option<Duration> {
    let value = headers.get(header::RETRY_AFTER)?.to_str().ok()?.trim();
    if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
        // Longer than u64 seconds still means "a long time": saturate.
        return Some(Duration::from_secs(value.parse().unwrap_or(u64::MAX)));
    }
    let date: header::HttpDate = value.parse().ok()?;
    let at = SystemTime::from(date);
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(retry: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::RETRY_AFTER, HeaderValue::from_str(retry).unwrap());
        h
    }

    #[test]
    fn retry_after_seconds_and_dates() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(784_111_777); // 1994-11-06 08:49:37
        assert_eq!(
            retry_after(&headers("1"), now),
            Some(Duration::from_secs(1))
        );
        assert_eq!(
            retry_after(&headers(" 120 "), now),
            Some(Duration::from_secs(120))
        );
        assert_eq!(
            retry_after(&headers("99999999999999999999999"), now),
            Some(Duration::from_secs(u64::MAX))
        );
        assert_eq!(
            retry_after(&headers("Sun, 06 Nov 1994 08:49:42 GMT"), now),
            Some(Duration::from_secs(5))
        );
        assert_eq!(
            retry_after(&headers("Sun, 06 Nov 1994 08:49:30 GMT"), now),
            Some(Duration::ZERO)
        );
        assert_eq!(retry_after(&headers("soon"), now), None);
        assert_eq!(retry_after(&headers("-1"), now), None);
        assert_eq!(retry_after(&HeaderMap::new(), now), None);
    }

    #[test]
    fn no_token_over_a_downgrading_redirect() {
        let https = Url::parse("https://a.example/whep").unwrap();
        let http = Url::parse("http://b.example/whep?token=t").unwrap();
        match check_redirect(&https, &http, true) {
            Err(WhepError::InvalidUrl { url, reason }) => {
                assert_eq!(url, "http://b.example/whep?token=***");
                assert!(reason.contains("https to plain http"));
            }
            other => panic!("{other:?}"),
        }
        assert!(check_redirect(&https, &http, false).is_ok());
        assert!(check_redirect(&http, &https, true).is_ok());
        assert!(check_redirect(&https, &https, true).is_ok());
    }

    #[test]
    fn media_type_ignores_parameters_and_case() {
        assert_eq!(
            media_type("Application/SDP; charset=utf-8"),
            "application/sdp"
        );
        assert_eq!(media_type("text/html"), "text/html");
    }

    #[test]
    fn debug_output_hides_secrets() {
        let cfg = SignalConfig {
            bearer_token: Some("s3cr3t".into()),
            ..SignalConfig::default()
        };
        assert!(!format!("{cfg:?}").contains("s3cr3t"));
        let answer = WhepAnswer {
            sdp: "v=0".into(),
            resource: Some(Url::parse("http://h/rtc/v1/whip/?action=delete&token=tk123").unwrap()),
            ice_servers: vec![IceServer {
                urls: vec!["turn:t".into()],
                username: Some("u".into()),
                credential: Some("pw987".into()),
            }],
            endpoint: Url::parse("http://h/w?token=tk456").unwrap(),
            info: AnswerInfo {
                ice_lite: true,
                candidates: 1,
                setup: None,
                opus_payload_type: 111,
            },
        };
        let text = format!("{answer:?}");
        for secret in ["tk123", "tk456", "pw987"] {
            assert!(!text.contains(secret), "{text}");
        }
    }

    #[test]
    fn defaults() {
        let cfg = SignalConfig::default();
        assert_eq!(cfg.max_redirects, 5);
        assert_eq!(cfg.max_retries, 3);
        assert_eq!(cfg.max_retry_after, Duration::from_secs(10));
        let t = Timeouts {
            http: Duration::from_secs(3),
            ..Timeouts::default()
        };
        assert_eq!(
            SignalConfig::from_timeouts(&t).timeout,
            Duration::from_secs(3)
        );
    }
}
