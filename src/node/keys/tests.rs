use super::*;

#[test]
fn table_matches_the_config_struct() {
    let defaults = toml::Table::try_from(NodeConfig::default()).unwrap();
    for (section, keys) in &defaults {
        for name in keys.as_table().unwrap().keys() {
            let def = find(&format!("{section}.{name}"))
                .unwrap_or_else(|| panic!("{section}.{name} missing from KEYS"));
            assert!(!def.optional, "{section}.{name} has a default");
        }
    }
    for def in KEYS {
        let present = defaults
            .get(def.section)
            .and_then(|s| s.get(def.name))
            .is_some();
        assert_eq!(present, !def.optional, "{}", def.key());
        if def.optional {
            assert!(!def.example.is_empty(), "{}", def.key());
        }
    }
}

#[test]
fn env_names() {
    assert_eq!(
        find("api.listen").unwrap().env_var(),
        "WHEP_BRIDGE_API_LISTEN"
    );
    assert_eq!(
        find_env("WHEP_BRIDGE_OUTPUT_SAMPLE_RATE").unwrap().key(),
        "output.sample_rate"
    );
    assert!(find("api.nope").is_none());
    assert!(find("nodot").is_none());
    assert_eq!(
        unknown_env_vars(["WHEP_BRIDGE_API_LISTEN", "WHEP_BRIDGE_API_LISTN", "HOME"]),
        vec!["WHEP_BRIDGE_API_LISTN".to_string()]
    );
}

#[test]
fn strings_become_typed_values() {
    use toml::Value;
    let p = |k: &str, raw: &str| find(k).unwrap().parse(raw);
    assert_eq!(
        p("output.sample_rate", " 8000 "),
        Ok(Some(Value::Integer(8000)))
    );
    assert!(p("output.sample_rate", "8k").is_err());
    assert_eq!(p("media.stall_secs", "2"), Ok(Some(Value::Float(2.0))));
    assert_eq!(p("rtc.ipv6", "yes"), Ok(Some(Value::Boolean(true))));
    assert!(p("rtc.ipv6", "maybe").is_err());
    assert_eq!(
        p("rtc.allowed_ips", "127.0.0.1, ::1"),
        Ok(Some(Value::Array(vec![
            Value::String("127.0.0.1".into()),
            Value::String("::1".into())
        ])))
    );
    assert_eq!(
        p("rtc.ice_servers", r#"["stun:a:1"]"#),
        Ok(Some(Value::Array(vec![Value::String("stun:a:1".into())])))
    );
    let m = p("consumer.ws_headers", r#"{ Authorization = "Bearer x" }"#)
        .unwrap()
        .unwrap();
    assert_eq!(m["Authorization"].as_str(), Some("Bearer x"));
    assert!(p("consumer.ws_headers", "Authorization: x").is_err());
    assert_eq!(p("api.token", ""), Ok(None));
}

#[test]
fn secrets_and_urls_are_shown_redacted() {
    let v = toml::Value::String("s3cret".into());
    assert_eq!(find("api.token").unwrap().show(&v), "\"***\"");
    let u = toml::Value::String("ws://h/?token=abc".into());
    assert_eq!(
        find("consumer.ws_url").unwrap().show(&u),
        "\"ws://h/?token=***\""
    );
    let ice = toml::Value::Array(vec![toml::Value::String("turn:u:pw@h".into())]);
    assert_eq!(
        find("rtc.ice_servers").unwrap().show(&ice),
        "[\"turn:u:***@h\"]"
    );
}
