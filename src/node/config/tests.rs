use super::*;

#[test]
fn defaults_match_the_shared_types() {
    let c = NodeConfig::default();
    assert!(c.validate().is_ok());
    assert_eq!(c.api.listen.to_string(), "127.0.0.1:8080");
    assert_eq!(c.api.max_body_bytes, 65_536);
    assert_eq!(c.consumer.replay_buffer_secs, 30.0);
    assert_eq!(c.node_id(), FALLBACK_NODE_ID);
    let s = c.to_settings();
    let d = PipelineSettings::default();
    assert_eq!(s.timeouts, d.timeouts);
    assert_eq!(
        (s.jitter_ms, s.media_stall, s.media_reconnect),
        (d.jitter_ms, d.media_stall, d.media_reconnect)
    );
    assert_eq!(
        (s.backoff_base, s.backoff_max),
        (d.backoff_base, d.backoff_max)
    );
    assert_eq!(s.ws_ping, d.ws_ping);
    assert_eq!(s.rtc, RtcConfig::default());
    assert_eq!(s.max_consecutive_failures, None);
    assert_eq!(c.to_defaults(), NodeDefaults::default());
    assert_eq!(c.replay_buffer(), Duration::from_secs(30));
}

#[test]
fn conversions_carry_every_value() {
    let mut c = NodeConfig::default();
    c.node.id = Some("n7".into());
    c.rtc.udp_port_range = Some("40000-40100".into());
    c.rtc.ice_servers = vec!["turn:u:p@t:3478".into()];
    c.rtc.allowed_ips = vec!["127.0.0.1".parse().unwrap()];
    c.consumer.ws_url = Some("ws://127.0.0.1:9/x".into());
    c.consumer.ws_mode = WsMode::Shared;
    c.output.sample_rate = 8_000;
    c.media.stall_secs = 2.5;
    assert!(c.validate().is_ok());
    let s = c.to_settings();
    assert_eq!(s.node, "n7");
    assert_eq!(s.rtc.udp_port_range, Some((40_000, 40_100)));
    assert_eq!(s.rtc.allowed_ips.len(), 1);
    assert_eq!(s.media_stall, Duration::from_millis(2_500));
    let d = c.to_defaults();
    assert_eq!(d.ice_servers[0].username.as_deref(), Some("u"));
    assert_eq!(d.ws_mode, WsMode::Shared);
    assert_eq!(d.output.sample_rate, 8_000);
    assert_eq!(d.ws_url.as_deref(), Some("ws://127.0.0.1:9/x"));
}

type Case = (fn(&mut NodeConfig), &'static str);

#[test]
fn validation_names_the_key() {
    let cases: Vec<Case> = vec![
        (|c| c.node.id = Some("a b".into()), "node.id"),
        (|c| c.api.token = Some(" ".into()), "api.token"),
        (|c| c.api.max_body_bytes = 10, "api.max_body_bytes"),
        (
            |c| c.consumer.ws_url = Some("http://x".into()),
            "consumer.ws_url",
        ),
        (
            |c| {
                c.consumer.ws_headers.insert("X".into(), "a\nb".into());
            },
            "consumer.ws_headers",
        ),
        (|c| c.consumer.ws_ping_secs = 0.0, "consumer.ws_ping_secs"),
        (
            |c| c.consumer.replay_buffer_secs = -1.0,
            "consumer.replay_buffer_secs",
        ),
        (|c| c.output.sample_rate = 11_025, "output.sample_rate"),
        (|c| c.output.channels = 3, "output.channels"),
        (|c| c.output.chunk_ms = 15, "output.chunk_ms"),
        (
            |c| c.rtc.ice_servers = vec!["http://x".into()],
            "rtc.ice_servers",
        ),
        (
            |c| c.rtc.udp_port_range = Some("9-1".into()),
            "rtc.udp_port_range",
        ),
        (|c| c.whep.backoff_max_secs = 0.1, "whep.backoff_max_secs"),
        (
            |c| c.timeouts.connect_secs = f64::NAN,
            "timeouts.connect_secs",
        ),
        (|c| c.timeouts.http_secs = 1e9, "timeouts.http_secs"),
        (|c| c.media.jitter_ms = 5_000, "media.jitter_ms"),
        (|c| c.media.reconnect_secs = 1.0, "media.reconnect_secs"),
    ];
    for (mutate, key) in cases {
        let mut c = NodeConfig::default();
        mutate(&mut c);
        assert_eq!(c.validate().unwrap_err().0, key);
    }
    let mut c = NodeConfig::default();
    c.consumer.replay_buffer_secs = 0.0;
    assert!(c.validate().is_ok(), "0 s disables the replay buffer");
}

#[test]
fn port_ranges() {
    assert_eq!(parse_port_range("1-2"), Ok((1, 2)));
    assert!(parse_port_range("0-2").is_err());
    assert!(parse_port_range("x").is_err());
    assert!(parse_port_range("1-99999").is_err());
}
