//! Checks on the SDP answer and the WHEP `Link` headers, before anything reaches the WebRTC
//! stack.
//!
//! webrtc-rs would eventually fail on a bad answer too, but with messages that do not tell an
//! operator that, say, the server answered an HTML page or rejected the audio section. These
//! checks give that message up front and summarise what the session will look like (ICE-lite,
//! candidate count, DTLS role) for logs.

use crate::config::IceServer;

use super::error::{sanitize_snippet, WhepError, SNIPPET_CHARS};

/// What the answer says about the session to come.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnswerInfo {
    /// `a=ice-lite`: the server only answers connectivity checks (SRS does this).
    pub ice_lite: bool,
    /// Number of `a=candidate` lines (SRS sends one host candidate; 0 means trickle or
    /// end-of-candidates only).
    pub candidates: usize,
    /// The DTLS role from `a=setup:` of the audio section (or session level), e.g. `passive`.
    pub setup: Option<String>,
    /// Payload type the server uses for Opus in the audio section.
    pub opus_payload_type: u8,
}

/// One `m=` section: its media line fields and attribute lines (without `a=`).
struct Section<'a> {
    media: &'a str,
    port: &'a str,
    formats: Vec<&'a str>,
    attributes: Vec<&'a str>,
}

impl Section<'_> {
    /// The value of the first `a=<name>:<value>` attribute.
    fn value(&self, name: &str) -> Option<&str> {
        attribute_value(&self.attributes, name)
    }

    /// The payload type mapped to `opus/48000` that is also listed on the m-line.
    fn opus_payload_type(&self) -> Option<u8> {
        self.attributes.iter().find_map(|a| {
            let (pt, codec) = a.strip_prefix("rtpmap:")?.split_once(' ')?;
            let mut codec = codec.trim().split('/');
            let name = codec.next()?;
            let rate = codec.next()?;
            let usable = name.eq_ignore_ascii_case("opus")
                && rate == "48000"
                && self.formats.contains(&pt.trim());
            if usable {
                pt.trim().parse().ok()
            } else {
                None
            }
        })
    }
}

fn attribute_value<'a>(attributes: &[&'a str], name: &str) -> Option<&'a str> {
    attributes.iter().find_map(|a| {
        let (key, value) = a.split_once(':')?;
        (key == name).then(|| value.trim())
    })
}

/// Media directions in which the server sends to us.
fn sends_to_us(direction: Option<&str>) -> bool {
    matches!(direction, None | Some("sendonly") | Some("sendrecv"))
}

fn direction(attributes: &[&str]) -> Option<&'static str> {
    ["sendonly", "sendrecv", "recvonly", "inactive"]
        .into_iter()
        .find(|d| attributes.contains(d))
}

/// Checks that `sdp` is an answer we can use: SDP (`v=0` first), ICE credentials and a DTLS
/// fingerprint present, and an `m=audio` section with a non-zero port, a direction in which
/// the server sends, and `a=rtpmap:<pt> opus/48000` for one of its formats.
///
/// Errors: [`WhepError::NotSdp`] when it does not even look like SDP (the caller fills in the
/// content type), [`WhepError::NoAudio`] when the audio is missing, rejected or not Opus,
/// [`WhepError::BadAnswer`] for other defects.
pub fn check_answer(sdp: &str) -> Result<AnswerInfo, WhepError> {
    let text = sdp.trim_start_matches('\u{feff}').trim_start();
    if !text.starts_with("v=") {
        return Err(WhepError::NotSdp {
            content_type: None,
            snippet: sanitize_snippet(text.as_bytes(), SNIPPET_CHARS, &[]),
        });
    }
    let mut lines = text.lines().map(str::trim).filter(|l| !l.is_empty());
    match lines.next() {
        Some("v=0") => {}
        Some(other) => {
            return Err(WhepError::BadAnswer(format!(
                "unsupported SDP version line {:?} (expected v=0)",
                sanitize_snippet(other.as_bytes(), 40, &[])
            )))
        }
        None => return Err(WhepError::BadAnswer("empty SDP".to_owned())),
    }

    let mut session: Vec<&str> = Vec::new();
    let mut sections: Vec<Section<'_>> = Vec::new();
    let mut candidates = 0;
    for line in lines {
        if let Some(media_line) = line.strip_prefix("m=") {
            let mut fields = media_line.split_whitespace();
            let media = fields.next().unwrap_or_default();
            let port = fields.next().unwrap_or_default();
            let _proto = fields.next();
            sections.push(Section {
                media,
                port,
                formats: fields.collect(),
                attributes: Vec::new(),
            });
        } else if let Some(attribute) = line.strip_prefix("a=") {
            if attribute.starts_with("candidate:") {
                candidates += 1;
            }
            match sections.last_mut() {
                Some(section) => section.attributes.push(attribute),
                None => session.push(attribute),
            }
        }
    }

    let any_level = |name: &str| {
        attribute_value(&session, name).is_some()
            || sections.iter().any(|s| s.value(name).is_some())
    };
    for (name, why) in [
        ("ice-ufrag", "ICE cannot authenticate"),
        ("ice-pwd", "ICE cannot authenticate"),
        ("fingerprint", "DTLS cannot be verified"),
    ] {
        if !any_level(name) {
            return Err(WhepError::BadAnswer(format!("no a={name} ({why})")));
        }
    }

    let session_direction = direction(&session);
    let audio = sections
        .iter()
        .filter(|s| s.media == "audio" && s.port.parse::<u32>().is_ok_and(|p| p != 0))
        .filter(|s| sends_to_us(direction(&s.attributes).or(session_direction)))
        .find_map(|s| s.opus_payload_type().map(|pt| (s, pt)));
    let Some((audio, opus_payload_type)) = audio else {
        return Err(WhepError::NoAudio);
    };

    Ok(AnswerInfo {
        // `a=ice-lite` is a flag; some stacks (webrtc-rs) write it as `a=ice-lite:ice-lite`.
        ice_lite: session
            .iter()
            .chain(audio.attributes.iter())
            .any(|a| *a == "ice-lite" || a.starts_with("ice-lite:")),
        candidates,
        setup: audio
            .value("setup")
            .or_else(|| attribute_value(&session, "setup"))
            .map(str::to_owned),
        opus_payload_type,
    })
}

/// ICE servers announced by WHEP `Link` headers (as defined for WHIP in RFC 9725, "STUN/TURN
/// Server Configuration"), e.g.
/// `<stun:stun.example.net>; rel="ice-server"` or
/// `<turn:turn.example.net?transport=udp>; rel="ice-server"; username="u"; credential="p";
/// credential-type="password"`. A header value may hold several comma-separated links.
/// Links with another `rel`, a non-STUN/TURN URI or a `credential-type` other than
/// `password` (OAuth is not supported by the WebRTC stack) are skipped.
pub fn parse_link_ice_servers<'a>(values: impl IntoIterator<Item = &'a str>) -> Vec<IceServer> {
    values
        .into_iter()
        .flat_map(|v| split_top_level(v, ','))
        .filter_map(|link| parse_ice_link(&link))
        .collect()
}

/// One link: `<uri>; key=value; key="quoted"`.
fn parse_ice_link(link: &str) -> Option<IceServer> {
    let link = link.trim();
    let rest = link.strip_prefix('<')?;
    let (uri, params) = rest.split_once('>')?;
    let uri = uri.trim();
    let scheme = uri.split(':').next()?.to_ascii_lowercase();
    if !matches!(scheme.as_str(), "stun" | "stuns" | "turn" | "turns") {
        return None;
    }
    let mut rel_ok = false;
    let mut username = None;
    let mut credential = None;
    let mut credential_type = None;
    for param in split_top_level(params, ';') {
        let Some((key, value)) = param.split_once('=') else {
            continue;
        };
        let value = unquote(value.trim());
        match key.trim().to_ascii_lowercase().as_str() {
            "rel" => {
                rel_ok = value
                    .split_whitespace()
                    .any(|r| r.eq_ignore_ascii_case("ice-server"))
            }
            "username" => username = Some(value),
            "credential" => credential = Some(value),
            "credential-type" => credential_type = Some(value.to_ascii_lowercase()),
            _ => {}
        }
    }
    if !rel_ok || credential_type.as_deref().is_some_and(|t| t != "password") {
        return None;
    }
    Some(IceServer {
        urls: vec![uri.to_owned()],
        username,
        credential,
    })
}

/// Splits on `sep` outside `<…>` and `"…"` (with `\` escapes inside quotes).
fn split_top_level(text: &str, sep: char) -> Vec<String> {
    let mut parts = Vec::new();
    let mut current = String::new();
    let (mut in_angle, mut in_quote, mut escaped) = (false, false, false);
    for ch in text.chars() {
        if in_quote {
            current.push(ch);
            match ch {
                _ if escaped => escaped = false,
                '\\' => escaped = true,
                '"' => in_quote = false,
                _ => {}
            }
            continue;
        }
        match ch {
            '"' => in_quote = true,
            '<' => in_angle = true,
            '>' => in_angle = false,
            c if c == sep && !in_angle => {
                parts.push(std::mem::take(&mut current));
                continue;
            }
            _ => {}
        }
        current.push(ch);
    }
    parts.push(current);
    parts.retain(|p| !p.trim().is_empty());
    parts
}

/// Removes surrounding quotes and `\` escapes of an RFC 8288 quoted-string.
fn unquote(value: &str) -> String {
    let Some(inner) = value.strip_prefix('"').and_then(|v| v.strip_suffix('"')) else {
        return value.to_owned();
    };
    let mut out = String::with_capacity(inner.len());
    let mut escaped = false;
    for ch in inner.chars() {
        if escaped {
            out.push(ch);
            escaped = false;
        } else if ch == '\\' {
            escaped = true;
        } else {
            out.push(ch);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An answer as SRS 6 produces it for an audio-only recvonly WHEP offer.
    const SRS_ANSWER: &str = "v=0\r\n\
o=SRS/6.0.155(Hang) 107408542208384 2 IN IP4 0.0.0.0\r\n\
s=SRSPlaySession\r\n\
t=0 0\r\n\
a=ice-lite\r\n\
a=group:BUNDLE 0\r\n\
a=msid-semantic: WMS live/livestream\r\n\
m=audio 9 UDP/TLS/RTP/SAVPF 111\r\n\
c=IN IP4 0.0.0.0\r\n\
a=ice-ufrag:9ab82e6x\r\n\
a=ice-pwd:31k30734n7x8s0z3a7m67ku4v0m9iw96\r\n\
a=fingerprint:sha-256 3C:9B:5E:CF:4D:4E:A8:1E:3E:61:1F:57:D6:0E:1B:4E:09:7E:4D:1C:7A:21:88:D8:2D:84:A2:27:1A:0D:2E:59\r\n\
a=setup:passive\r\n\
a=mid:0\r\n\
a=extmap:3 http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01\r\n\
a=sendonly\r\n\
a=rtcp-mux\r\n\
a=rtcp-rsize\r\n\
a=rtpmap:111 opus/48000/2\r\n\
a=rtcp-fb:111 transport-cc\r\n\
a=fmtp:111 minptime=10;useinbandfec=1\r\n\
a=ssrc:2876160231 cname:k3c14f3e1j0n2ky3\r\n\
a=ssrc:2876160231 msid:live/livestream audio-track\r\n\
a=candidate:0 1 udp 2130706431 127.0.0.1 8000 typ host generation 0\r\n";

    #[test]
    fn srs_answer_is_accepted_and_summarised() {
        let info = check_answer(SRS_ANSWER).unwrap();
        assert_eq!(
            info,
            AnswerInfo {
                ice_lite: true,
                candidates: 1,
                setup: Some("passive".into()),
                opus_payload_type: 111,
            }
        );
    }

    #[test]
    fn lf_only_and_other_payload_types_work() {
        let sdp = SRS_ANSWER
            .replace("\r\n", "\n")
            .replace("SAVPF 111", "SAVPF 0 96")
            .replace("rtpmap:111 opus/48000/2", "rtpmap:96 OPUS/48000/2")
            .replace("a=ice-lite\n", "");
        let info = check_answer(&sdp).unwrap();
        assert_eq!(info.opus_payload_type, 96);
        assert!(!info.ice_lite);
    }

    #[test]
    fn ice_lite_with_a_value_is_still_ice_lite() {
        let sdp = SRS_ANSWER.replace("a=ice-lite\r\n", "a=ice-lite:ice-lite\r\n");
        assert!(check_answer(&sdp).unwrap().ice_lite);
    }

    #[test]
    fn not_sdp_bodies() {
        for body in ["<html><body>Login</body></html>", "{\"code\":400}", ""] {
            match check_answer(body) {
                Err(WhepError::NotSdp { snippet, .. }) => assert!(body.starts_with(&snippet)),
                other => panic!("{body:?}: {other:?}"),
            }
        }
        assert!(matches!(
            check_answer("v=1\r\n"),
            Err(WhepError::BadAnswer(m)) if m.contains("v=1")
        ));
    }

    #[test]
    fn missing_or_rejected_audio_is_no_audio() {
        let video_only = SRS_ANSWER.replace(
            "m=audio 9 UDP/TLS/RTP/SAVPF 111",
            "m=video 9 UDP/TLS/RTP/SAVPF 111",
        );
        assert!(matches!(check_answer(&video_only), Err(WhepError::NoAudio)));
        let rejected = SRS_ANSWER.replace("m=audio 9 ", "m=audio 0 ");
        assert!(matches!(check_answer(&rejected), Err(WhepError::NoAudio)));
        let pcmu = SRS_ANSWER.replace("opus/48000/2", "PCMU/8000");
        assert!(matches!(check_answer(&pcmu), Err(WhepError::NoAudio)));
        let wrong_rate = SRS_ANSWER.replace("opus/48000/2", "opus/16000");
        assert!(matches!(check_answer(&wrong_rate), Err(WhepError::NoAudio)));
        let unlisted = SRS_ANSWER.replace("SAVPF 111", "SAVPF 112");
        assert!(matches!(check_answer(&unlisted), Err(WhepError::NoAudio)));
        let inactive = SRS_ANSWER.replace("a=sendonly", "a=inactive");
        assert!(matches!(check_answer(&inactive), Err(WhepError::NoAudio)));
    }

    #[test]
    fn second_audio_section_can_be_the_usable_one() {
        let sdp = SRS_ANSWER.replace(
            "m=audio 9 UDP/TLS/RTP/SAVPF 111\r\n",
            "m=audio 0 UDP/TLS/RTP/SAVPF 0\r\na=inactive\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\n",
        );
        assert_eq!(check_answer(&sdp).unwrap().opus_payload_type, 111);
    }

    #[test]
    fn missing_security_attributes_are_bad_answers() {
        for attr in ["a=fingerprint:", "a=ice-ufrag:", "a=ice-pwd:"] {
            let sdp = SRS_ANSWER.replace(attr, "a=x-removed:");
            match check_answer(&sdp) {
                Err(WhepError::BadAnswer(m)) => assert!(m.contains(&attr[2..attr.len() - 1])),
                other => panic!("{attr}: {other:?}"),
            }
        }
    }

    #[test]
    fn link_headers_stun_and_turn() {
        let servers = parse_link_ice_servers([
            "<stun:stun.example.net:3478>; rel=\"ice-server\"",
            "<turn:turn.example.net:3478?transport=udp>; rel=\"ice-server\"; \
             username=\"user\"; credential=\"p,a;s\\\"s\"; credential-type=\"password\", \
             <turns:turn.example.net:5349>; rel=ice-server; username=u2; credential=c2",
        ]);
        assert_eq!(
            servers,
            vec![
                IceServer {
                    urls: vec!["stun:stun.example.net:3478".into()],
                    username: None,
                    credential: None,
                },
                IceServer {
                    urls: vec!["turn:turn.example.net:3478?transport=udp".into()],
                    username: Some("user".into()),
                    credential: Some("p,a;s\"s".into()),
                },
                IceServer {
                    urls: vec!["turns:turn.example.net:5349".into()],
                    username: Some("u2".into()),
                    credential: Some("c2".into()),
                },
            ]
        );
    }

    #[test]
    fn link_headers_that_are_not_ice_servers_are_skipped() {
        let servers = parse_link_ice_servers([
            "<https://example.net/resource/1/layer>; rel=\"urn:ietf:params:whep:ext:core:layer\"",
            "<stun:a.example>; rel=\"preconnect\"",
            "<turn:b.example>; rel=\"ice-server\"; username=\"u\"; credential=\"tok\"; \
             credential-type=\"oauth\"",
            "garbage, <stun:c.example>; REL=\"ICE-SERVER other\"",
            "",
        ]);
        assert_eq!(
            servers,
            vec![IceServer {
                urls: vec!["stun:c.example".into()],
                username: None,
                credential: None,
            }]
        );
    }
}
