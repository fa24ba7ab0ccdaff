use super::*;

const GOOD: &str = r#"{"stmId":"cam-1","whepUrl":"webrtc://srs/live/cam-1?token=T",
    "traceId":"0af7651916cd43dd8448eb211c80319c","wsUrl":"wss://c.example/in/{stmId}",
    "wsHeaders":{"Authorization":"Bearer x"},"whepToken":"w",
    "iceServers":[{"urls":["stun:s:3478"]},{"urls":["turn:t:3478"],"username":"u","credential":"c"}],
    "output":{"sampleRate":24000,"channels":2,"chunkMs":100,"envelope":"extended","wsMode":"shared"}}"#;

fn problem(body: &str) -> Problem {
    parse_stream_request(body.as_bytes(), None).unwrap_err()
}

/// (body, field at fault, a word the detail must contain)
fn assert_bad(body: &str, field: Option<&str>, needle: &str) {
    let p = problem(body);
    assert_eq!(p.status, 400, "{body}: {p}");
    assert_eq!(p.field.as_deref(), field, "{body}: {p}");
    assert!(p.detail.contains(needle), "{body}: {p} lacks {needle:?}");
}

#[test]
fn full_request_round_trips() {
    let req = parse_stream_request(GOOD.as_bytes(), None).unwrap();
    assert_eq!(req.stm_id, "cam-1");
    assert_eq!(req.ice_servers.as_ref().unwrap().len(), 2);
    let again = serde_json::to_vec(&req).unwrap();
    assert_eq!(parse_stream_request(&again, None).unwrap(), req);
    let expected: Value = serde_json::from_str(GOOD).unwrap();
    assert_eq!(serde_json::to_value(&req).unwrap(), expected);
}

#[test]
fn malformed_bodies() {
    assert_bad("", None, "empty");
    assert_bad("{\"stmId\": \"a\",\n \"whepUrl\": }", None, "line 2 column");
    assert_bad("[1,2]", None, "JSON object, got an array");
    assert_bad("\"x\"", None, "got a string");
    assert_bad(
        r#"{"stmId":"a","whepUrl":"http://h/w"} x"#,
        None,
        "trailing",
    );
    assert_bad(
        r#"{"stmId":"a","whepUrl":"http://h/w","stmId":"b"}"#,
        Some("stmId"),
        "duplicate",
    );
    assert_bad(
        r#"{"stmId":"a","whepUrl":"http://h/w","output":{"channels":1,"channels":2}}"#,
        Some("output.channels"),
        "duplicate",
    );
}

#[test]
fn structure_errors_name_the_field() {
    let base = r#""stmId":"a","whepUrl":"http://h/w""#;
    assert_bad(r#"{"whepUrl":"http://h/w"}"#, Some("stmId"), "missing");
    assert_bad(
        r#"{"stmId":"a","whepUrl":null}"#,
        Some("whepUrl"),
        "missing",
    );
    assert_bad(
        &format!("{{{base},\"foo\":1}}"),
        Some("foo"),
        "unknown field \"foo\"",
    );
    assert_bad(
        &format!("{{{base},\"output\":{{\"rate\":1}}}}"),
        Some("output.rate"),
        "sampleRate",
    );
    assert_bad(
        &format!("{{{base},\"iceServers\":[{{\"urls\":[],\"x\":1}}]}}"),
        Some("iceServers[0].x"),
        "unknown",
    );
    assert_bad(
        r#"{"stmId":5,"whepUrl":"http://h/w"}"#,
        Some("stmId"),
        "a number",
    );
    assert_bad(
        &format!("{{{base},\"output\":{{\"sampleRate\":\"16000\"}}}}"),
        Some("output.sampleRate"),
        "integer",
    );
    assert_bad(
        &format!("{{{base},\"output\":{{\"channels\":-1}}}}"),
        Some("output.channels"),
        "integer",
    );
    assert_bad(
        &format!("{{{base},\"output\":{{\"channels\":70000}}}}"),
        Some("output.channels"),
        "65535",
    );
    assert_bad(
        &format!("{{{base},\"output\":{{\"envelope\":\"xml\"}}}}"),
        Some("output.envelope"),
        "seed, extended, binary",
    );
    assert_bad(
        &format!("{{{base},\"output\":{{\"wsMode\":\"perStream\"}}}}"),
        Some("output.wsMode"),
        "per-stream",
    );
    assert_bad(
        &format!("{{{base},\"wsHeaders\":{{\"A\":1}}}}"),
        Some("wsHeaders.A"),
        "string",
    );
    assert_bad(
        &format!("{{{base},\"wsHeaders\":[]}}"),
        Some("wsHeaders"),
        "object of strings",
    );
    assert_bad(
        &format!("{{{base},\"iceServers\":[{{\"urls\":\"stun:h\"}}]}}"),
        Some("iceServers[0].urls"),
        "array",
    );
    assert_bad(
        &format!("{{{base},\"iceServers\":[{{\"urls\":[1]}}]}}"),
        Some("iceServers[0].urls[0]"),
        "string",
    );
}

#[test]
fn value_errors_name_the_field() {
    let base = r#""stmId":"a","whepUrl":"http://h/w""#;
    assert_bad(
        r#"{"stmId":"a/b","whepUrl":"http://h/w"}"#,
        Some("stmId"),
        "'/'",
    );
    assert_bad(
        &format!(
            r#"{{"stmId":"{}","whepUrl":"http://h/w"}}"#,
            "x".repeat(129)
        ),
        Some("stmId"),
        "128",
    );
    assert_bad(
        r#"{"stmId":"a","whepUrl":"ftp://h/w"}"#,
        Some("whepUrl"),
        "ftp",
    );
    assert_bad(
        r#"{"stmId":"a","whepUrl":"webrtc://h"}"#,
        Some("whepUrl"),
        "",
    );
    assert_bad(
        &format!("{{{base},\"traceId\":\"\"}}"),
        Some("traceId"),
        "empty",
    );
    assert_bad(
        &format!("{{{base},\"traceId\":\"a b\"}}"),
        Some("traceId"),
        "' '",
    );
    assert_bad(
        &format!("{{{base},\"wsUrl\":\"http://c/\"}}"),
        Some("wsUrl"),
        "ws://",
    );
    assert_bad(
        &format!("{{{base},\"wsUrl\":\"ws://\"}}"),
        Some("wsUrl"),
        "",
    );
    assert_bad(
        &format!("{{{base},\"wsHeaders\":{{\"Bad Name\":\"v\"}}}}"),
        Some("wsHeaders.Bad Name"),
        "token",
    );
    assert_bad(
        &format!("{{{base},\"wsHeaders\":{{\"X\":\"a\\r\\nEvil: 1\"}}}}"),
        Some("wsHeaders.X"),
        "CR or LF",
    );
    assert_bad(
        &format!("{{{base},\"whepToken\":\"\"}}"),
        Some("whepToken"),
        "empty",
    );
    assert_bad(
        &format!("{{{base},\"whepToken\":\"a\\nb\"}}"),
        Some("whepToken"),
        "CR or LF",
    );
    assert_bad(
        &format!("{{{base},\"iceServers\":[{{\"urls\":[\"http://h\"]}}]}}"),
        Some("iceServers[0].urls[0]"),
        "scheme",
    );
    assert_bad(
        &format!("{{{base},\"iceServers\":[{{\"urls\":[\"turn:h\"]}}]}}"),
        Some("iceServers[0].username"),
        "TURN",
    );
    for (field, value, needle) in [
        ("sampleRate", "11025", "11025"),
        ("channels", "3", "1 or 2"),
        ("chunkMs", "15", "multiple of 10"),
    ] {
        assert_bad(
            &format!("{{{base},\"output\":{{\"{field}\":{value}}}}}"),
            Some(&format!("output.{field}")),
            needle,
        );
    }
}

#[test]
fn errors_never_echo_secrets() {
    for body in [
        r#"{"stmId":"a","whepUrl":"gopher://h/w?token=SEKRIT"}"#,
        r#"{"stmId":"a","whepUrl":"http://h/w","wsUrl":"http://u:SEKRIT@c/?key=SEKRIT"}"#,
        r#"{"stmId":"a","whepUrl":"http://h/w","whepToken":"SEKRIT\n"}"#,
        r#"{"stmId":"a","whepUrl":"http://h/w","wsHeaders":{"X":"SEKRIT\r"}}"#,
        r#"{"stmId":"a","whepUrl":"http://h/w","iceServers":[{"urls":["ftp:u:SEKRIT@h"]}]}"#,
    ] {
        let p = problem(body);
        assert!(!p.to_json().contains("SEKRIT"), "{}", p.to_json());
    }
}

#[test]
fn put_path_fills_or_must_match_the_body() {
    let body = br#"{"whepUrl":"http://h/w"}"#;
    let req = parse_stream_request(body, Some("cam9")).unwrap();
    assert_eq!(req.stm_id, "cam9");
    let same = br#"{"stmId":"cam9","whepUrl":"http://h/w"}"#;
    assert_eq!(
        parse_stream_request(same, Some("cam9")).unwrap().stm_id,
        "cam9"
    );
    let p = parse_stream_request(same, Some("other")).unwrap_err();
    assert_eq!((p.status, p.field.as_deref()), (400, Some("stmId")));
    assert!(p.detail.contains("does not match"), "{p}");
    let p = parse_stream_request(body, Some("bad/id")).unwrap_err();
    assert_eq!(p.field.as_deref(), Some("stmId"));
    // POST needs stmId in the body.
    let p = parse_stream_request(body, None).unwrap_err();
    assert_eq!(p.field.as_deref(), Some("stmId"));
}
