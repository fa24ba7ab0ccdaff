//! The URL forms a stream's `whepUrl` may take (SPEC §3) and the `Location` join.
//!
//! - `http(s)://…`: a WHEP endpoint, used exactly as given. SRS deployments put tokens in the
//!   query string, so the query is never re-encoded or reordered.
//! - `webrtc://host[:port]/app/stream[?query]`: SRS style. Mapped like SRS's own `srs.sdk.js`:
//!   the port is the SRS *HTTP API* port (default [`SRS_DEFAULT_API_PORT`], or 443 with
//!   `schema=https`), the path's last segment is the stream and everything before it the app,
//!   and the query parameters are passed on to the API (that is where `vhost=`, `token=` … go).

use url::Url;

use super::error::{redact_url, WhepError};

/// SRS's HTTP API port, which also serves WHEP and the legacy play API.
pub const SRS_DEFAULT_API_PORT: u16 = 1985;

/// Path of SRS's WHEP endpoint.
const SRS_WHEP_PATH: &str = "/rtc/v1/whep/";
/// Path of SRS's legacy play API.
const SRS_PLAY_PATH: &str = "/rtc/v1/play/";

/// The WHEP endpoint to POST the offer to, from a stream's `whepUrl` (see the module docs).
pub fn endpoint_url(input: &str) -> Result<Url, WhepError> {
    let input = input.trim();
    let scheme = scheme_of(input)?;
    match scheme.as_str() {
        "http" | "https" => parse_http(input),
        "webrtc" => {
            let parts = SrsUrl::parse(input)?;
            parts.api_url(SRS_WHEP_PATH, true)
        }
        other => Err(invalid(
            input,
            format!("unsupported scheme {other:?} (use http://, https:// or webrtc://)"),
        )),
    }
}

/// The SRS legacy play API request for a `webrtc://host[:port]/app/stream[?query]` URL:
/// the API URL (`…/rtc/v1/play/` with the query passed on, as `srs.sdk.js` builds it) and the
/// `streamurl` for the JSON body (the input itself: SRS parses vhost, app, stream and the
/// token from it).
pub fn srs_play_request(input: &str) -> Result<(Url, String), WhepError> {
    let input = input.trim();
    let scheme = scheme_of(input)?;
    if scheme != "webrtc" {
        return Err(invalid(
            input,
            "the SRS legacy play API needs a webrtc://host[:port]/app/stream URL".to_owned(),
        ));
    }
    let parts = SrsUrl::parse(input)?;
    let api = parts.api_url(SRS_PLAY_PATH, false)?;
    Ok((api, input.to_owned()))
}

/// Resolves a `Location` header value against the URL the request was sent to (RFC 3986
/// reference resolution). SRS answers WHEP with a relative `/rtc/v1/whip/?action=delete&…`;
/// other servers use `resource/ID`, `../x`, `//host/x` or absolute URLs. The query of
/// `location` is kept byte for byte (it carries SRS's session token).
pub fn join_location(request: &Url, location: &str) -> Result<Url, WhepError> {
    let location = location.trim();
    if location.is_empty() {
        return Err(WhepError::InvalidUrl {
            url: redact_url(request),
            reason: "empty Location header".to_owned(),
        });
    }
    let mut joined = request.join(location).map_err(|e| WhepError::InvalidUrl {
        url: redact_url(request),
        reason: format!("cannot resolve Location against it: {e}"),
    })?;
    if !matches!(joined.scheme(), "http" | "https") {
        return Err(WhepError::InvalidUrl {
            url: redact_url(&joined),
            reason: "Location must be an http(s) URL".to_owned(),
        });
    }
    // Fragments are never sent to a server, and `http::Uri` (used by awc) rejects them.
    joined.set_fragment(None);
    Ok(joined)
}

/// An `InvalidUrl` for raw user input. The input is parsed for redaction when possible;
/// otherwise only its scheme is shown, so a token in an unparsable URL never leaks.
fn invalid(input: &str, reason: String) -> WhepError {
    let url = match Url::parse(input) {
        Ok(u) => redact_url(&u),
        Err(_) if input.is_empty() => "\"\"".to_owned(),
        Err(_) => match input.split_once(':') {
            Some((scheme, _)) if !scheme.is_empty() && scheme.len() < 16 => {
                format!("{scheme}:…")
            }
            _ => "(unparsable)".to_owned(),
        },
    };
    WhepError::InvalidUrl { url, reason }
}

/// The lower-cased scheme of `input`, or an `InvalidUrl` explaining what is missing.
fn scheme_of(input: &str) -> Result<String, WhepError> {
    if input.is_empty() {
        return Err(invalid(input, "the URL is empty".to_owned()));
    }
    match input.split_once("://") {
        Some((scheme, _))
            if !scheme.is_empty()
                && scheme
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.')) =>
        {
            Ok(scheme.to_ascii_lowercase())
        }
        _ => Err(invalid(
            input,
            "expected http://, https:// or webrtc://host/app/stream".to_owned(),
        )),
    }
}

/// Parses an `http(s)` URL, requiring a host; the fragment (never sent) is dropped.
fn parse_http(input: &str) -> Result<Url, WhepError> {
    let mut url = Url::parse(input).map_err(|e| invalid(input, e.to_string()))?;
    if url.host_str().is_none_or(str::is_empty) {
        return Err(invalid(input, "the URL has no host".to_owned()));
    }
    url.set_fragment(None);
    Ok(url)
}

/// The pieces of an SRS `webrtc://` URL.
#[derive(Debug)]
struct SrsUrl {
    /// `https` when the query says `schema=https`, else `http`.
    scheme: &'static str,
    /// Host as written (IPv6 in brackets).
    host: String,
    /// API port.
    port: u16,
    /// Everything between the first and the last `/` of the path (percent-decoded).
    app: String,
    /// The last path segment (percent-decoded).
    stream: String,
    /// The raw query string, if any.
    query: Option<String>,
}

impl SrsUrl {
    fn parse(input: &str) -> Result<Self, WhepError> {
        let url = Url::parse(input).map_err(|e| invalid(input, e.to_string()))?;
        let host = match url.host_str() {
            Some(h) if !h.is_empty() => h.to_owned(),
            _ => return Err(invalid(input, "the URL has no host".to_owned())),
        };
        let schema = url
            .query_pairs()
            .find(|(k, _)| k == "schema")
            .map(|(_, v)| v.to_ascii_lowercase());
        let scheme = match schema.as_deref() {
            None | Some("http") => "http",
            Some("https") => "https",
            Some(other) => {
                return Err(invalid(
                    input,
                    format!("schema={other} is not supported (use http or https)"),
                ))
            }
        };
        let port = url.port().unwrap_or(if scheme == "https" {
            443
        } else {
            SRS_DEFAULT_API_PORT
        });
        let path = url.path().trim_start_matches('/');
        let (app, stream) = match path.rsplit_once('/') {
            Some((app, stream)) if !app.is_empty() && !stream.is_empty() => (app, stream),
            _ => {
                return Err(invalid(
                    input,
                    "the path must be /app/stream (e.g. webrtc://host/live/livestream)".to_owned(),
                ))
            }
        };
        Ok(Self {
            scheme,
            host,
            port,
            app: percent_decode(app),
            stream: percent_decode(stream),
            query: url.query().map(str::to_owned),
        })
    }

    /// `scheme://host:port{path}?…`. For WHEP (`with_app_stream`) the query starts with
    /// `app=…&stream=…`; the input's query parameters follow unchanged, except `schema`
    /// for WHEP, which only instructs this client. The legacy API keeps every parameter, as
    /// `srs.sdk.js` does.
    fn api_url(&self, path: &str, with_app_stream: bool) -> Result<Url, WhepError> {
        let mut params: Vec<String> = Vec::new();
        if with_app_stream {
            params.push(format!("app={}", form_encode(&self.app)));
            params.push(format!("stream={}", form_encode(&self.stream)));
        }
        if let Some(query) = &self.query {
            params.extend(
                query
                    .split('&')
                    .filter(|p| !p.is_empty())
                    .filter(|p| !with_app_stream || p.split('=').next() != Some("schema"))
                    .map(str::to_owned),
            );
        }
        let mut text = format!("{}://{}:{}{}", self.scheme, self.host, self.port, path);
        if !params.is_empty() {
            text.push('?');
            text.push_str(&params.join("&"));
        }
        Url::parse(&text).map_err(|e| WhepError::InvalidUrl {
            url: format!("{}://{}:{}{}", self.scheme, self.host, self.port, path),
            reason: format!("cannot build the SRS API URL: {e}"),
        })
    }
}

/// `application/x-www-form-urlencoded` encoding of one query value.
fn form_encode(value: &str) -> String {
    url::form_urlencoded::byte_serialize(value.as_bytes()).collect()
}

/// Decodes `%XX` escapes of a path segment (invalid escapes are kept as written).
fn percent_decode(segment: &str) -> String {
    fn hex(b: u8) -> Option<u8> {
        (b as char).to_digit(16).and_then(|d| u8::try_from(d).ok())
    }
    let bytes = segment.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            if let (Some(hi), Some(lo)) = (
                bytes.get(i + 1).copied().and_then(hex),
                bytes.get(i + 2).copied().and_then(hex),
            ) {
                out.push(hi << 4 | lo);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn endpoint(s: &str) -> String {
        endpoint_url(s).unwrap().to_string()
    }

    fn reason(e: WhepError) -> String {
        match e {
            WhepError::InvalidUrl { reason, .. } => reason,
            other => panic!("expected InvalidUrl, got {other:?}"),
        }
    }

    #[test]
    fn http_urls_are_kept_with_their_query_byte_for_byte() {
        let s = "http://srs:1985/rtc/v1/whep/?app=live&stream=s1&token=a%2Fb+c&x=%7E&z";
        assert_eq!(endpoint(s), s);
        let s = "https://media.example.com/whep/endpoint/abc?b=2&a=1";
        assert_eq!(endpoint(s), s);
        // Surrounding whitespace (from config files) is ignored; fragments are never sent.
        assert_eq!(
            endpoint("  http://h:8080/whep?x=1#frag \n"),
            "http://h:8080/whep?x=1"
        );
        assert_eq!(endpoint("HTTP://h/w"), "http://h/w");
    }

    #[test]
    fn http_ipv6_and_ports() {
        assert_eq!(
            endpoint("http://[::1]:1985/rtc/v1/whep/?app=a&stream=b"),
            "http://[::1]:1985/rtc/v1/whep/?app=a&stream=b"
        );
        let u = endpoint_url("https://[2001:db8::1]:8443/whep").unwrap();
        assert_eq!(u.port(), Some(8443));
        assert_eq!(u.host_str(), Some("[2001:db8::1]"));
    }

    #[test]
    fn webrtc_maps_to_the_srs_whep_endpoint() {
        assert_eq!(
            endpoint("webrtc://srs.local/live/livestream"),
            "http://srs.local:1985/rtc/v1/whep/?app=live&stream=livestream"
        );
        assert_eq!(
            endpoint("webrtc://10.0.0.5:2985/live/s1"),
            "http://10.0.0.5:2985/rtc/v1/whep/?app=live&stream=s1"
        );
        assert_eq!(
            endpoint("webrtc://[::1]/live/s1"),
            "http://[::1]:1985/rtc/v1/whep/?app=live&stream=s1"
        );
        assert_eq!(
            endpoint("webrtc://[::1]:8000/live/s1"),
            "http://[::1]:8000/rtc/v1/whep/?app=live&stream=s1"
        );
    }

    #[test]
    fn webrtc_query_is_passed_on_unchanged() {
        assert_eq!(
            endpoint("webrtc://h/live/s?token=ab%2Fc+d&vhost=v.example&flag"),
            "http://h:1985/rtc/v1/whep/?app=live&stream=s&token=ab%2Fc+d&vhost=v.example&flag"
        );
    }

    #[test]
    fn webrtc_schema_https_selects_https_and_port_443() {
        assert_eq!(
            endpoint("webrtc://h/live/s?schema=https&token=t"),
            "https://h/rtc/v1/whep/?app=live&stream=s&token=t"
        );
        let u = endpoint_url("webrtc://h/live/s?schema=https").unwrap();
        assert_eq!(u.port_or_known_default(), Some(443));
        assert_eq!(
            endpoint("webrtc://h:1990/live/s?schema=https"),
            "https://h:1990/rtc/v1/whep/?app=live&stream=s"
        );
        assert!(
            reason(endpoint_url("webrtc://h/live/s?schema=ftp").unwrap_err())
                .contains("schema=ftp")
        );
    }

    #[test]
    fn webrtc_multi_segment_app_and_encoded_names() {
        assert_eq!(
            endpoint("webrtc://h/live/sub/s1"),
            "http://h:1985/rtc/v1/whep/?app=live%2Fsub&stream=s1"
        );
        assert_eq!(
            endpoint("webrtc://h/live/a%20b&c"),
            "http://h:1985/rtc/v1/whep/?app=live&stream=a+b%26c"
        );
    }

    #[test]
    fn rejected_inputs_say_why() {
        assert!(reason(endpoint_url("").unwrap_err()).contains("empty"));
        assert!(reason(endpoint_url("rtmp://h/live/s").unwrap_err()).contains("\"rtmp\""));
        assert!(reason(endpoint_url("srs:1985/live").unwrap_err()).contains("expected"));
        assert!(reason(endpoint_url("webrtc://h/live").unwrap_err()).contains("/app/stream"));
        assert!(reason(endpoint_url("webrtc://h/live/").unwrap_err()).contains("/app/stream"));
        assert!(reason(endpoint_url("webrtc://h/").unwrap_err()).contains("/app/stream"));
        assert!(reason(endpoint_url("webrtc:///live/s").unwrap_err()).contains("no host"));
        assert!(matches!(
            endpoint_url("http://:80/x"),
            Err(WhepError::InvalidUrl { .. })
        ));
        assert!(matches!(
            endpoint_url("http://h:99999/x"),
            Err(WhepError::InvalidUrl { .. })
        ));
    }

    #[test]
    fn invalid_url_errors_never_show_tokens() {
        let e = endpoint_url("webrtc://h/live?token=SECRET").unwrap_err();
        assert!(!e.to_string().contains("SECRET"), "{e}");
        let e = endpoint_url("rtmp://h/live/s?token=SECRET").unwrap_err();
        assert!(!e.to_string().contains("SECRET"), "{e}");
        let e = endpoint_url("http://h:99999/x?token=SECRET").unwrap_err();
        assert!(!e.to_string().contains("SECRET"), "{e}");
    }

    #[test]
    fn legacy_play_request() {
        let (api, stream) = srs_play_request("webrtc://srs:1985/live/s1?token=t&vhost=v").unwrap();
        assert_eq!(api.as_str(), "http://srs:1985/rtc/v1/play/?token=t&vhost=v");
        assert_eq!(stream, "webrtc://srs:1985/live/s1?token=t&vhost=v");
        let (api, _) = srs_play_request("webrtc://[::1]/live/s1").unwrap();
        assert_eq!(api.as_str(), "http://[::1]:1985/rtc/v1/play/");
        let (api, _) = srs_play_request("webrtc://h/live/s1?schema=https").unwrap();
        assert_eq!(api.as_str(), "https://h/rtc/v1/play/?schema=https");
        assert!(matches!(
            srs_play_request("http://h:1985/rtc/v1/whep/?app=a&stream=b"),
            Err(WhepError::InvalidUrl { .. })
        ));
    }

    #[test]
    fn location_join_relative_absolute_and_dot_segments() {
        let req = Url::parse("http://srs:1985/rtc/v1/whep/?app=live&stream=s1&token=x").unwrap();
        let j = |loc| join_location(&req, loc).unwrap().to_string();
        // What SRS returns for WHEP: an absolute path with its own query, kept byte for byte.
        assert_eq!(
            j("/rtc/v1/whip/?action=delete&token=ab%2Bc&app=live&stream=s1&session=a:b"),
            "http://srs:1985/rtc/v1/whip/?action=delete&token=ab%2Bc&app=live&stream=s1&session=a:b"
        );
        assert_eq!(j("resource/42"), "http://srs:1985/rtc/v1/whep/resource/42");
        assert_eq!(j("../whip/x"), "http://srs:1985/rtc/v1/whip/x");
        assert_eq!(j("../../../../x"), "http://srs:1985/x");
        assert_eq!(j("./r?id=1"), "http://srs:1985/rtc/v1/whep/r?id=1");
        assert_eq!(j("?id=2"), "http://srs:1985/rtc/v1/whep/?id=2");
        assert_eq!(j("//other:8080/r/1"), "http://other:8080/r/1");
        assert_eq!(j("https://edge.example/r/1"), "https://edge.example/r/1");
        assert_eq!(j("  /r/1#frag  "), "http://srs:1985/r/1");
    }

    #[test]
    fn location_join_ipv6_base_and_bad_values() {
        let req = Url::parse("http://[::1]:40000/whep").unwrap();
        assert_eq!(
            join_location(&req, "/resource/1").unwrap().as_str(),
            "http://[::1]:40000/resource/1"
        );
        assert!(matches!(
            join_location(&req, ""),
            Err(WhepError::InvalidUrl { .. })
        ));
        assert!(matches!(
            join_location(&req, "ftp://h/x"),
            Err(WhepError::InvalidUrl { .. })
        ));
        assert!(matches!(
            join_location(&req, "http://[::1/x"),
            Err(WhepError::InvalidUrl { .. })
        ));
    }

    #[test]
    fn percent_decode_handles_bad_escapes() {
        assert_eq!(percent_decode("a%20b"), "a b");
        assert_eq!(percent_decode("a%2"), "a%2");
        assert_eq!(percent_decode("%zz%"), "%zz%");
        assert_eq!(percent_decode("%+1"), "%+1");
        assert_eq!(percent_decode("%C3%A9"), "é");
    }
}
