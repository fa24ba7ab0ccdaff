use std::io::Write;

use super::*;
use crate::api::spec::WsMode;
use crate::node::{keys, render_defaults};

fn env(vars: &[(&str, &str)]) -> impl Iterator<Item = (String, String)> {
    let mut all = vec![("HOSTNAME".to_owned(), "test-host".to_owned())];
    all.extend(vars.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    all.into_iter()
}

fn file(text: &str) -> tempfile::NamedTempFile {
    let mut f = tempfile::NamedTempFile::new().unwrap();
    f.write_all(text.as_bytes()).unwrap();
    f
}

fn defaults_with_host() -> NodeConfig {
    let mut c = NodeConfig::default();
    c.node.id = Some("test-host".into());
    c
}

const FILE: &str = r#"
[api]
listen = "0.0.0.0:9000"
token = "file-token"

[consumer]
ws_url = "ws://127.0.0.1:7000/in/{stmId}"
ws_headers = { Authorization = "Bearer c" }
ws_mode = "shared"

[output]
sample_rate = 48000
envelope = "extended"

[rtc]
ice_servers = ["stun:127.0.0.1:3478"]
allowed_ips = ["127.0.0.1"]
udp_port_range = "40000-40010"

[media]
stall_secs = 3
"#;

#[test]
fn defaults_without_file_env_or_flags() {
    let c = NodeConfig::load(None, env(&[]), &[]).unwrap();
    assert_eq!(c, defaults_with_host());
}

#[test]
fn node_id_falls_back_when_the_host_name_is_unusable() {
    let vars = vec![("HOSTNAME".to_owned(), "not a valid id".to_owned())];
    let c = NodeConfig::load(None, vars.into_iter(), &[]).unwrap();
    // /etc/hostname or the fallback: always a valid id.
    assert!(check_id(c.node_id()).is_ok(), "{}", c.node_id());
    assert_ne!(c.node_id(), "not a valid id");
}

#[test]
fn file_values_are_read() {
    let f = file(FILE);
    let c = NodeConfig::load(Some(f.path()), env(&[]), &[]).unwrap();
    assert_eq!(c.api.listen.to_string(), "0.0.0.0:9000");
    assert_eq!(c.api.token.as_deref(), Some("file-token"));
    assert_eq!(c.consumer.ws_mode, WsMode::Shared);
    assert_eq!(c.consumer.ws_headers["Authorization"], "Bearer c");
    assert_eq!(c.output.sample_rate, 48_000);
    assert_eq!(c.rtc.allowed_ips.len(), 1);
    assert_eq!(c.media.stall_secs, 3.0, "integers are accepted for seconds");
    assert_eq!(
        c.output.channels, 1,
        "keys not in the file keep their default"
    );
    let d = c.to_defaults();
    assert_eq!(d.ice_servers[0].urls, vec!["stun:127.0.0.1:3478"]);
    assert_eq!(c.to_settings().rtc.udp_port_range, Some((40_000, 40_010)));
}

#[test]
fn env_beats_file_and_flags_beat_env() {
    let f = file(FILE);
    let vars = [
        ("WHEP_BRIDGE_API_LISTEN", "127.0.0.1:9001"),
        ("WHEP_BRIDGE_OUTPUT_SAMPLE_RATE", "24000"),
        ("WHEP_BRIDGE_RTC_IPV6", "true"),
        ("WHEP_BRIDGE_API_TOKEN", ""),
        ("WHEP_BRIDGE_WHEP_TOKEN", "ignored: read by pull"),
        ("UNRELATED", "x"),
    ];
    let c = NodeConfig::load(Some(f.path()), env(&vars), &[]).unwrap();
    assert_eq!(c.api.listen.to_string(), "127.0.0.1:9001");
    assert_eq!(c.output.sample_rate, 24_000);
    assert!(c.rtc.ipv6);
    assert_eq!(
        c.api.token, None,
        "an empty variable unsets an optional key"
    );
    assert_eq!(c.output.envelope, crate::config::EnvelopeKind::Extended);

    let flags = [("api.listen", "127.0.0.1:9002"), ("node.id", "flag-node")];
    let c = NodeConfig::load(Some(f.path()), env(&vars), &flags).unwrap();
    assert_eq!(c.api.listen.to_string(), "127.0.0.1:9002");
    assert_eq!(c.node_id(), "flag-node");
    assert_eq!(c.output.sample_rate, 24_000);
}

#[test]
fn unknown_keys_are_rejected_with_their_name_and_file() {
    let f = file("[api]\nlisten = \"127.0.0.1:1\"\nlistn = 1\n");
    let e = NodeConfig::load(Some(f.path()), env(&[]), &[]).unwrap_err();
    let msg = e.to_string();
    assert!(msg.starts_with("api.listn (from "), "{msg}");
    assert!(msg.contains(&f.path().display().to_string()), "{msg}");
    assert!(msg.contains("unknown key (keys of [api]: listen,"), "{msg}");

    let f = file("[apis]\nlisten = 1\n");
    let msg = NodeConfig::load(Some(f.path()), env(&[]), &[])
        .unwrap_err()
        .to_string();
    assert!(msg.starts_with("apis.listen (from "), "{msg}");
    assert!(msg.contains("sections: node, api,"), "{msg}");

    let f = file("listen = \"127.0.0.1:1\"\n");
    let msg = NodeConfig::load(Some(f.path()), env(&[]), &[])
        .unwrap_err()
        .to_string();
    assert!(msg.starts_with("listen (from "), "{msg}");

    let e = NodeConfig::load(None, env(&[]), &[("api.port", "1")]).unwrap_err();
    assert!(
        matches!(e, ConfigError::UnknownKey { ref key, from: Source::Flag, .. } if key == "api.port")
    );
}

#[test]
fn bad_values_name_key_and_source() {
    let e = NodeConfig::load(
        None,
        env(&[("WHEP_BRIDGE_OUTPUT_SAMPLE_RATE", "11025")]),
        &[],
    )
    .unwrap_err();
    let msg = e.to_string();
    assert!(
        msg.starts_with(
            "output.sample_rate = 11025 (from WHEP_BRIDGE_OUTPUT_SAMPLE_RATE): 11025 Hz is not supported"
        ),
        "{msg}"
    );

    let msg = NodeConfig::load(None, env(&[("WHEP_BRIDGE_API_LISTEN", "localhost")]), &[])
        .unwrap_err()
        .to_string();
    assert!(
        msg.starts_with("api.listen = \"localhost\" (from WHEP_BRIDGE_API_LISTEN): "),
        "{msg}"
    );

    let msg = NodeConfig::load(None, env(&[("WHEP_BRIDGE_OUTPUT_CHANNELS", "two")]), &[])
        .unwrap_err()
        .to_string();
    assert!(msg.contains("expected an integer"), "{msg}");

    let msg = NodeConfig::load(None, env(&[("WHEP_BRIDGE_OUTPUT_CHANNELS", "70000")]), &[])
        .unwrap_err()
        .to_string();
    assert!(
        msg.starts_with("output.channels = 70000 (from WHEP_BRIDGE_OUTPUT_CHANNELS)"),
        "{msg}"
    );

    let f = file("[output]\nsample_rate = \"fast\"\n");
    let msg = NodeConfig::load(Some(f.path()), env(&[]), &[])
        .unwrap_err()
        .to_string();
    let expected = format!(
        "output.sample_rate = \"fast\" (from {}): ",
        f.path().display()
    );
    assert!(msg.starts_with(&expected), "{msg}");

    let msg = NodeConfig::load(None, env(&[]), &[("output.envelope", "xml")])
        .unwrap_err()
        .to_string();
    assert!(
        msg.starts_with("output.envelope = \"xml\" (from command line): "),
        "{msg}"
    );

    // Cross-key check: blamed on the key that is left at its default.
    let f = file("[media]\nstall_secs = 20\n");
    let msg = NodeConfig::load(Some(f.path()), env(&[]), &[])
        .unwrap_err()
        .to_string();
    assert!(
        msg.starts_with("media.reconnect_secs = 15.0 (from default): must not be less"),
        "{msg}"
    );
}

#[test]
fn secrets_never_appear_in_errors() {
    let msg = NodeConfig::load(None, env(&[("WHEP_BRIDGE_API_TOKEN", "SEKRIT\nX")]), &[])
        .unwrap_err()
        .to_string();
    assert!(
        msg.starts_with("api.token = \"***\" (from WHEP_BRIDGE_API_TOKEN): "),
        "{msg}"
    );
    assert!(!msg.contains("SEKRIT"), "{msg}");

    let f = file("[consumer]\nws_url = \"http://h/?token=SEKRIT\"\n");
    let msg = NodeConfig::load(Some(f.path()), env(&[]), &[])
        .unwrap_err()
        .to_string();
    assert!(msg.starts_with("consumer.ws_url = "), "{msg}");
    assert!(!msg.contains("SEKRIT"), "{msg}");

    let f = file("[consumer]\nws_headers = { \"X\" = \"SEKRIT\\r\\n\" }\n");
    let msg = NodeConfig::load(Some(f.path()), env(&[]), &[])
        .unwrap_err()
        .to_string();
    assert!(msg.starts_with("consumer.ws_headers = \"***\""), "{msg}");
    assert!(!msg.contains("SEKRIT"), "{msg}");
}

#[test]
fn unreadable_or_malformed_files_are_named() {
    let missing = Path::new("/nonexistent/whep-bridge.toml");
    let e = NodeConfig::load(Some(missing), env(&[]), &[]).unwrap_err();
    assert!(matches!(e, ConfigError::Read { .. }));
    assert!(e.to_string().contains("/nonexistent/whep-bridge.toml"));

    let f = file("[api]\nlisten = \n");
    let e = NodeConfig::load(Some(f.path()), env(&[]), &[]).unwrap_err();
    let msg = e.to_string();
    assert!(matches!(e, ConfigError::Syntax { .. }), "{msg}");
    assert!(msg.contains("line 2, column 10: "), "{msg}");
    let f = file("[api]\ntoken = \"SEKRIT\n");
    let msg = NodeConfig::load(Some(f.path()), env(&[]), &[])
        .unwrap_err()
        .to_string();
    assert!(!msg.contains("SEKRIT"), "{msg}");
}

#[test]
fn rendered_defaults_load_back_to_the_defaults() {
    let text = render_defaults();
    assert!(text.contains("[timeouts]\n"));
    assert!(text.contains("# env: WHEP_BRIDGE_OUTPUT_SAMPLE_RATE\nsample_rate = 16000\n"));
    assert!(text.contains("# token = \"change-me\"\n"));
    let f = file(&text);
    let c = NodeConfig::load(Some(f.path()), env(&[]), &[]).unwrap();
    assert_eq!(c, defaults_with_host());
    // Uncommenting every optional key's example gives a valid configuration too.
    let optional: Vec<String> = keys::KEYS
        .iter()
        .filter(|d| d.optional)
        .map(|d| format!("# {} = ", d.name))
        .collect();
    let uncommented: String = text
        .lines()
        .map(
            |l| match optional.iter().any(|o| l.starts_with(o.as_str())) {
                true => &l[2..],
                false => l,
            },
        )
        .collect::<Vec<_>>()
        .join("\n");
    let f = file(&uncommented);
    let c = NodeConfig::load(Some(f.path()), env(&[]), &[]).unwrap();
    assert_eq!(c.node_id(), "node-a");
    assert_eq!(c.api.token.as_deref(), Some("change-me"));
    assert_eq!(c.rtc.udp_port_range.as_deref(), Some("40000-40100"));
    assert!(c.consumer.ws_url.is_some());
}

#[test]
fn redis_section_from_env_and_its_errors_name_the_key_without_the_password() {
    let c = NodeConfig::load(
        None,
        env(&[
            ("WHEP_BRIDGE_REDIS_URL", "redis://:s3cret@127.0.0.1:6390/2"),
            ("WHEP_BRIDGE_REDIS_PREFIX", "eu-1"),
        ]),
        &[],
    )
    .expect("valid");
    let r = c.redis_settings().expect("redis configured");
    assert_eq!(r.url, "redis://:s3cret@127.0.0.1:6390/2");
    assert_eq!(r.prefix, "eu-1");
    assert_eq!(r.lease_ttl, std::time::Duration::from_secs(3));
    assert!(
        NodeConfig::default().redis_settings().is_none(),
        "embedded by default"
    );

    let e = NodeConfig::load(
        None,
        env(&[("WHEP_BRIDGE_REDIS_URL", "http://:s3cret@127.0.0.1:6390")]),
        &[],
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("redis.url") && e.contains("WHEP_BRIDGE_REDIS_URL"),
        "{e}"
    );
    assert!(!e.contains("s3cret"), "{e}");
    let e = NodeConfig::load(None, env(&[("WHEP_BRIDGE_REDIS_TIMEOUT_SECS", "2")]), &[])
        .unwrap_err()
        .to_string();
    assert!(e.contains("redis.timeout_secs"), "{e}");
    assert!(render_defaults().contains("[redis]"));
}
