//! Maps a request line to what the test source should do, and builds session URLs.
//!
//! Two dialects are served: plain WHEP (`POST /whep/{name}`, session at
//! `/whep/{name}/sessions/{id}`) and SRS (`POST /rtc/v1/whep/?app=APP&stream=NAME`, session
//! at the relative `/rtc/v1/whip/?action=delete&token=ID&app=APP&stream=NAME` that SRS
//! returns even for WHEP).
//!
//! Besides them, control routes for test harnesses (loopback tool, no auth):
//! `POST /control/block?agent=SUB` and `POST /control/unblock[?agent=SUB]` (see `block`).

use url::form_urlencoded;

/// The two URL dialects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Whep,
    Srs,
}

/// What a request asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    Health,
    Stats,
    /// Start a session playing stream `name`.
    Play {
        name: String,
        app: Option<String>,
        dialect: Dialect,
        /// The decoded query string (behaviour overrides, SRS keys, tokens).
        query: Vec<(String, String)>,
    },
    /// End session `id`.
    Delete {
        id: String,
    },
    /// `POST /control/block?agent=SUB`: refuse and drop clients whose `User-Agent` contains
    /// `agent`.
    Block {
        agent: String,
    },
    /// `POST /control/unblock[?agent=SUB]`: lift that rule, or every rule when `None`.
    Unblock {
        agent: Option<String>,
    },
    /// CORS preflight or capability probe.
    Options,
    /// Known path, wrong method.
    MethodNotAllowed {
        allow: &'static str,
    },
    NotFound,
    /// A play, delete or control URL with a missing or malformed part.
    BadRequest(&'static str),
}

/// Characters allowed in stream names, app names and session ids.
fn valid_name(s: &str) -> bool {
    (1..=128).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._~:-".contains(&b))
}

/// Longest `agent` accepted by the control routes (a `User-Agent` fragment).
const MAX_AGENT_LEN: usize = 256;

fn split_target(target: &str) -> (&str, Vec<(String, String)>) {
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let pairs = form_urlencoded::parse(query.as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    (path, pairs)
}

fn get<'a>(query: &'a [(String, String)], key: &str) -> Option<&'a str> {
    query
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

/// Routes one request.
pub fn route(method: &str, target: &str) -> Route {
    let (path, query) = split_target(target);
    if method == "OPTIONS" {
        return Route::Options;
    }
    match path {
        "/healthz" => {
            return match method {
                "GET" | "HEAD" => Route::Health,
                _ => Route::MethodNotAllowed { allow: "GET" },
            }
        }
        "/stats" => {
            return match method {
                "GET" => Route::Stats,
                _ => Route::MethodNotAllowed { allow: "GET" },
            }
        }
        "/rtc/v1/whep/" | "/rtc/v1/whep" | "/rtc/v1/whip/" | "/rtc/v1/whip" => {
            return srs_route(method, path, query)
        }
        "/control/block" | "/control/unblock" => return control_route(method, path, &query),
        _ => {}
    }
    let Some(rest) = path.strip_prefix("/whep/") else {
        return Route::NotFound;
    };
    let parts: Vec<&str> = rest.split('/').collect();
    match parts.as_slice() {
        [name] => match method {
            "POST" if valid_name(name) => Route::Play {
                name: (*name).to_owned(),
                app: None,
                dialect: Dialect::Whep,
                query,
            },
            "POST" => Route::BadRequest("stream name must be 1-128 of [A-Za-z0-9._~:-]"),
            _ => Route::MethodNotAllowed { allow: "POST" },
        },
        [_name, "sessions", id] => match method {
            "DELETE" if valid_name(id) => Route::Delete {
                id: (*id).to_owned(),
            },
            "DELETE" => Route::NotFound,
            _ => Route::MethodNotAllowed { allow: "DELETE" },
        },
        _ => Route::NotFound,
    }
}

fn srs_route(method: &str, path: &str, query: Vec<(String, String)>) -> Route {
    let is_delete = method == "DELETE" || get(&query, "action") == Some("delete");
    if is_delete {
        if method != "DELETE" {
            return Route::MethodNotAllowed { allow: "DELETE" };
        }
        return match get(&query, "token") {
            Some(id) if valid_name(id) => Route::Delete { id: id.to_owned() },
            Some(_) => Route::NotFound,
            None => Route::BadRequest("missing token"),
        };
    }
    if method != "POST" {
        return Route::MethodNotAllowed { allow: "POST" };
    }
    if path.starts_with("/rtc/v1/whip") {
        // Publishing is not something a test source accepts.
        return Route::NotFound;
    }
    let app = get(&query, "app").unwrap_or("live").to_owned();
    let Some(name) = get(&query, "stream").map(str::to_owned) else {
        return Route::BadRequest("missing stream");
    };
    if !valid_name(&name) || !valid_name(&app) {
        return Route::BadRequest("app and stream must be 1-128 of [A-Za-z0-9._~:-]");
    }
    Route::Play {
        name,
        app: Some(app),
        dialect: Dialect::Srs,
        query,
    }
}

/// `/control/block` needs a non-empty `agent`; `/control/unblock` takes an optional one
/// (absent = lift every rule), but an empty one is a mistake, not "all".
fn control_route(method: &str, path: &str, query: &[(String, String)]) -> Route {
    if method != "POST" {
        return Route::MethodNotAllowed { allow: "POST" };
    }
    let agent = match get(query, "agent") {
        Some(a) if a.trim().is_empty() => {
            return Route::BadRequest("agent must be a non-empty part of a User-Agent")
        }
        Some(a) if a.len() > MAX_AGENT_LEN => {
            return Route::BadRequest("agent must be at most 256 bytes")
        }
        other => other.map(str::to_owned),
    };
    match (path, agent) {
        ("/control/block", Some(agent)) => Route::Block { agent },
        ("/control/block", None) => Route::BadRequest("missing agent"),
        (_, agent) => Route::Unblock { agent },
    }
}

/// The `Location` of a new session.
pub fn location(dialect: Dialect, name: &str, app: Option<&str>, id: &str) -> String {
    match dialect {
        Dialect::Whep => format!("/whep/{name}/sessions/{id}"),
        Dialect::Srs => format!(
            "/rtc/v1/whip/?action=delete&token={id}&app={}&stream={name}",
            app.unwrap_or("live")
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whep_play_and_delete() {
        match route("POST", "/whep/cam-1?freq=437&freq_r=1013") {
            Route::Play {
                name,
                app,
                dialect,
                query,
            } => {
                assert_eq!(
                    (name.as_str(), app, dialect),
                    ("cam-1", None, Dialect::Whep)
                );
                assert_eq!(query[0], ("freq".into(), "437".into()));
                assert_eq!(query.len(), 2);
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            route("DELETE", "/whep/cam-1/sessions/ab12"),
            Route::Delete { id: "ab12".into() }
        );
        assert_eq!(
            route("GET", "/whep/cam-1"),
            Route::MethodNotAllowed { allow: "POST" }
        );
        assert!(matches!(route("POST", "/whep/a%20b"), Route::BadRequest(_)));
        assert_eq!(route("POST", "/whep/a/b"), Route::NotFound);
    }

    #[test]
    fn srs_play_and_delete() {
        for path in ["/rtc/v1/whep/", "/rtc/v1/whep"] {
            match route("POST", &format!("{path}?app=live&stream=s1&freq=500")) {
                Route::Play {
                    name,
                    app,
                    dialect,
                    query,
                } => {
                    assert_eq!(name, "s1");
                    assert_eq!(app.as_deref(), Some("live"));
                    assert_eq!(dialect, Dialect::Srs);
                    assert!(query.contains(&("freq".into(), "500".into())));
                }
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(
            route(
                "DELETE",
                "/rtc/v1/whip/?action=delete&token=t1&app=live&stream=s1"
            ),
            Route::Delete { id: "t1".into() }
        );
        assert_eq!(
            route("DELETE", "/rtc/v1/whep/?token=t1"),
            Route::Delete { id: "t1".into() }
        );
        assert!(matches!(
            route("POST", "/rtc/v1/whep/?app=live"),
            Route::BadRequest(_)
        ));
        assert_eq!(
            route("POST", "/rtc/v1/whip/?app=live&stream=s"),
            Route::NotFound
        );
    }

    #[test]
    fn service_routes() {
        assert_eq!(route("GET", "/healthz"), Route::Health);
        assert_eq!(route("GET", "/stats"), Route::Stats);
        assert_eq!(route("OPTIONS", "/whep/x"), Route::Options);
        assert_eq!(route("GET", "/nope"), Route::NotFound);
        assert_eq!(route("POST", "/"), Route::NotFound);
    }

    #[test]
    fn control_block_and_unblock() {
        assert_eq!(
            route("POST", "/control/block?agent=node-a"),
            Route::Block {
                agent: "node-a".into()
            }
        );
        // Decoded like any query value: spaces and parentheses of a User-Agent survive.
        assert_eq!(
            route("POST", "/control/block?agent=%28node+node-a%29&x=1"),
            Route::Block {
                agent: "(node node-a)".into()
            }
        );
        assert_eq!(
            route("POST", "/control/unblock?agent=node-a"),
            Route::Unblock {
                agent: Some("node-a".into())
            }
        );
        assert_eq!(
            route("POST", "/control/unblock"),
            Route::Unblock { agent: None }
        );
    }

    #[test]
    fn control_routes_reject_bad_input() {
        for target in [
            "/control/block",
            "/control/block?agent=",
            "/control/block?agent=%20",
            "/control/block?other=node-a",
            "/control/unblock?agent=",
        ] {
            assert!(
                matches!(route("POST", target), Route::BadRequest(_)),
                "{target}"
            );
        }
        let long = format!("/control/block?agent={}", "a".repeat(257));
        assert!(matches!(route("POST", &long), Route::BadRequest(_)));
        for method in ["GET", "PUT", "DELETE"] {
            for path in ["/control/block?agent=a", "/control/unblock"] {
                assert_eq!(
                    route(method, path),
                    Route::MethodNotAllowed { allow: "POST" },
                    "{method} {path}"
                );
            }
        }
        assert_eq!(route("POST", "/control/other"), Route::NotFound);
        assert_eq!(route("POST", "/control"), Route::NotFound);
    }

    #[test]
    fn locations_round_trip_to_delete() {
        for dialect in [Dialect::Whep, Dialect::Srs] {
            let loc = location(dialect, "s1", Some("live"), "abc");
            assert_eq!(route("DELETE", &loc), Route::Delete { id: "abc".into() });
        }
        assert_eq!(
            location(Dialect::Srs, "s1", Some("live"), "abc"),
            "/rtc/v1/whip/?action=delete&token=abc&app=live&stream=s1"
        );
    }
}
