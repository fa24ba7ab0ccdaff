//! Checks of single stream-spec values. Each returns a message for the operator (the caller
//! attaches the field path) and never echoes a secret: URLs are shown redacted, tokens and
//! header values not at all. Shared by the API and the node configuration.

use crate::config::IceServer;
use crate::whep::url::endpoint_url;

use super::view::redact_url_str;
use crate::api::problem::truncate;

/// Longest id accepted (`stmId`, `traceId`, node id).
pub const MAX_ID_LEN: usize = 128;

/// Characters allowed in ids besides ASCII letters and digits.
fn is_id_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | ':' | '-')
}

/// `[A-Za-z0-9._:-]{1,128}`: the form of `stmId`, `traceId` and node ids. Such ids go into
/// URLs (`{stmId}` templates), metric labels and Redis keys unescaped, hence the small set.
pub fn check_id(s: &str) -> Result<(), String> {
    if s.is_empty() {
        return Err("must not be empty".to_owned());
    }
    if s.chars().count() > MAX_ID_LEN {
        return Err(format!("is longer than {MAX_ID_LEN} characters"));
    }
    if let Some(bad) = s.chars().find(|c| !is_id_char(*c)) {
        return Err(format!(
            "{:?} contains {bad:?}; use only letters, digits and . _ : -",
            truncate(s, 64)
        ));
    }
    Ok(())
}

/// A `whepUrl`: http(s) WHEP endpoint or SRS `webrtc://` URL, exactly as the client will
/// use it ([`endpoint_url`]). Its errors show the URL redacted.
pub fn check_whep_url(s: &str) -> Result<(), String> {
    endpoint_url(s).map(|_| ()).map_err(|e| e.to_string())
}

/// A consumer URL: `ws://` or `wss://` with a host. `{stmId}` and `{traceId}` templates are
/// substituted with sample values first, so they may appear anywhere (even in the host).
pub fn check_ws_url(s: &str) -> Result<(), String> {
    let shown = redact_url_str(s);
    let filled = s
        .replace("{stmId}", "stm")
        .replace("{traceId}", "00000000000000000000000000000001");
    let url =
        url::Url::parse(filled.trim()).map_err(|e| format!("{shown:?} is not a valid URL: {e}"))?;
    if !matches!(url.scheme(), "ws" | "wss") {
        return Err(format!(
            "{shown:?}: unsupported scheme {:?} (use ws:// or wss://)",
            url.scheme()
        ));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(format!("{shown:?} has no host"));
    }
    Ok(())
}

/// Headers the WebSocket client sets itself; a user value would break the handshake.
const RESERVED_HEADERS: [&str; 8] = [
    "host",
    "connection",
    "upgrade",
    "content-length",
    "transfer-encoding",
    "sec-websocket-key",
    "sec-websocket-version",
    "sec-websocket-accept",
];

/// RFC 9110 `tchar`.
fn is_tchar(c: char) -> bool {
    c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c)
}

/// A handshake header name: an RFC 9110 token, not one the handshake sets itself.
pub fn check_header_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("header name must not be empty".to_owned());
    }
    if let Some(bad) = name.chars().find(|c| !is_tchar(*c)) {
        return Err(format!(
            "header name {:?} contains {bad:?} (not allowed in an HTTP token)",
            truncate(name, 64)
        ));
    }
    if RESERVED_HEADERS.contains(&name.to_ascii_lowercase().as_str()) {
        return Err(format!(
            "header {name:?} is set by the WebSocket handshake itself"
        ));
    }
    Ok(())
}

/// A header value (or a bearer token, which becomes one): visible ASCII, spaces and tabs.
/// CR/LF are refused by name, they would split the request (header injection). The value is
/// never shown: it is typically a credential.
pub fn check_header_value(value: &str) -> Result<(), String> {
    if value.contains(['\r', '\n']) {
        return Err("value contains CR or LF".to_owned());
    }
    if value
        .chars()
        .any(|c| c != '\t' && !(' '..='~').contains(&c))
    {
        return Err("value contains a control or non-ASCII character".to_owned());
    }
    Ok(())
}

/// A bearer token (`whepToken`, the API token): a non-empty header-safe value.
pub fn check_token(value: &str) -> Result<(), String> {
    if value.trim().is_empty() {
        return Err("must not be empty".to_owned());
    }
    check_header_value(value)
}

/// One ICE server: at least one URL, each `stun:`, `stuns:`, `turn:` or `turns:` with a host;
/// TURN needs `username` and `credential`. Errors carry the sub-path (`urls[1]`, `username`).
pub fn check_ice_server(server: &IceServer) -> Result<(), (String, String)> {
    if server.urls.is_empty() {
        return Err(("urls".to_owned(), "needs at least one URL".to_owned()));
    }
    let mut needs_credentials = false;
    for (i, u) in server.urls.iter().enumerate() {
        let at = || format!("urls[{i}]");
        let shown = redact_url_str(u);
        let (scheme, rest) = u
            .split_once(':')
            .ok_or_else(|| (at(), format!("{shown:?} has no scheme (stun:, turn: …)")))?;
        let scheme = scheme.to_ascii_lowercase();
        match scheme.as_str() {
            "stun" | "stuns" => {}
            "turn" | "turns" => needs_credentials = true,
            other => {
                return Err((
                    at(),
                    format!("unsupported scheme {other:?} (use stun:, stuns:, turn: or turns:)"),
                ))
            }
        }
        let host = rest.split(['?', ':']).next().unwrap_or_default();
        let host = host.trim_start_matches("//");
        if host.is_empty() && !rest.starts_with('[') {
            return Err((at(), format!("{shown:?} has no host")));
        }
        if u.contains(['\r', '\n', ' ']) {
            return Err((at(), format!("{shown:?} contains whitespace")));
        }
    }
    if needs_credentials {
        if server.username.as_deref().is_none_or(str::is_empty) {
            return Err((
                "username".to_owned(),
                "a TURN server needs a username".to_owned(),
            ));
        }
        if server.credential.as_deref().is_none_or(str::is_empty) {
            return Err((
                "credential".to_owned(),
                "a TURN server needs a credential".to_owned(),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids() {
        assert!(check_id("cam-1.main:a_b").is_ok());
        assert!(check_id(&"a".repeat(128)).is_ok());
        assert!(check_id(&"a".repeat(129)).unwrap_err().contains("128"));
        assert!(check_id("").is_err());
        assert!(check_id("a/b").unwrap_err().contains("'/'"));
        assert!(check_id("a b").is_err());
        assert!(check_id("é").is_err());
    }

    #[test]
    fn whep_urls() {
        assert!(check_whep_url("http://h:1985/rtc/v1/whep/?app=live&stream=s").is_ok());
        assert!(check_whep_url("webrtc://h/live/s").is_ok());
        let e = check_whep_url("rtmp://h/live/s?token=sekrit").unwrap_err();
        assert!(e.contains("rtmp"), "{e}");
        assert!(!e.contains("sekrit"), "{e}");
    }

    #[test]
    fn ws_urls() {
        assert!(check_ws_url("ws://127.0.0.1:9000/ingest/{stmId}?t={traceId}").is_ok());
        assert!(check_ws_url("wss://{stmId}.example.com/").is_ok());
        let e = check_ws_url("http://h/x?token=sekrit").unwrap_err();
        assert!(e.contains("http") && !e.contains("sekrit"), "{e}");
        assert!(check_ws_url("ws://").is_err());
        assert!(check_ws_url("ws://:80/x").is_err());
        assert!(check_ws_url("not a url").is_err());
    }

    #[test]
    fn headers() {
        assert!(check_header_name("Authorization").is_ok());
        assert!(check_header_name("X-Api-Key").is_ok());
        assert!(check_header_name("Bad Name").is_err());
        assert!(check_header_name("").is_err());
        assert!(check_header_name("Sec-WebSocket-Key")
            .unwrap_err()
            .contains("handshake"));
        assert!(check_header_value("Bearer abc\tdef").is_ok());
        let e = check_header_value("abc\r\nX-Evil: 1").unwrap_err();
        assert!(e.contains("CR or LF") && !e.contains("abc"), "{e}");
        assert!(check_header_value("ä").is_err());
        assert!(check_token("").is_err());
        assert!(check_token("t0k").is_ok());
    }

    fn ice(urls: &[&str], user: Option<&str>, cred: Option<&str>) -> IceServer {
        IceServer {
            urls: urls.iter().map(|s| s.to_string()).collect(),
            username: user.map(Into::into),
            credential: cred.map(Into::into),
        }
    }

    #[test]
    fn ice_servers() {
        assert!(check_ice_server(&ice(&["stun:stun.l.google.com:19302"], None, None)).is_ok());
        assert!(check_ice_server(&ice(
            &["turn:t.example.com:3478?transport=udp", "turns:[::1]:5349"],
            Some("u"),
            Some("p")
        ))
        .is_ok());
        assert_eq!(
            check_ice_server(&ice(&[], None, None)).unwrap_err().0,
            "urls"
        );
        assert_eq!(
            check_ice_server(&ice(&["stun:h", "http://h"], None, None))
                .unwrap_err()
                .0,
            "urls[1]"
        );
        assert_eq!(
            check_ice_server(&ice(&["stun:"], None, None))
                .unwrap_err()
                .0,
            "urls[0]"
        );
        assert_eq!(
            check_ice_server(&ice(&["turn:h"], None, Some("p")))
                .unwrap_err()
                .0,
            "username"
        );
        assert_eq!(
            check_ice_server(&ice(&["turn:h"], Some("u"), None))
                .unwrap_err()
                .0,
            "credential"
        );
    }
}
