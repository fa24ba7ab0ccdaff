//! `Node`: a real `whep-bridge serve` process on a free loopback port, with helpers to call
//! its API, plus `assert_problem` for RFC 9457 answers.

use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::net::{free_port, http_request_with, wait_http_ok, HttpResponse};
use super::process::{bin_path, ChildGuard};

pub const T: Duration = Duration::from_secs(10);

pub struct Node {
    pub guard: ChildGuard,
    pub base: String,
    pub token: Option<String>,
}

impl Node {
    /// Starts a node (node id `node-a`) with the API token, if given, and extra env vars.
    pub fn start_with(token: Option<&str>, env: &[(&str, &str)]) -> Self {
        Self::start_as("node-a", token, env)
    }

    /// [`Node::start_with`] with node id `id`.
    pub fn start_as(id: &str, token: Option<&str>, env: &[(&str, &str)]) -> Self {
        let listen = format!("127.0.0.1:{}", free_port());
        let mut cmd = Command::new(bin_path());
        cmd.args(["serve", "--listen", &listen, "--node-id", id])
            .env("WHEP_BRIDGE_RTC_ALLOWED_IPS", "127.0.0.1");
        if let Some(t) = token {
            cmd.env("WHEP_BRIDGE_API_TOKEN", t);
        }
        for (k, v) in env {
            cmd.env(k, v);
        }
        let guard = ChildGuard::spawn("serve", &mut cmd).expect("spawn serve");
        wait_http_ok(&format!("http://{listen}/readyz"), Duration::from_secs(20))
            .unwrap_or_else(|e| panic!("node not ready: {e}\n{}", guard.log_tail()));
        Self {
            guard,
            base: format!("http://{listen}"),
            token: token.map(str::to_owned),
        }
    }

    pub fn start(token: Option<&str>) -> Self {
        Self::start_with(token, &[])
    }

    /// `host:port` of the API (for raw TCP clients).
    pub fn addr(&self) -> &str {
        self.base.trim_start_matches("http://")
    }

    /// A request without the token, even when the node has one.
    pub fn anonymous(&self, method: &str, path: &str) -> HttpResponse {
        http_request_with(method, &format!("{}{path}", self.base), b"", &[], T)
            .unwrap_or_else(|e| panic!("{method} {path}: {e}\n{}", self.guard.log_tail()))
    }

    /// SIGTERM; the node must exit 0 within `grace` (it drains its streams first).
    pub fn stop(&mut self, grace: Duration) {
        let status = self
            .guard
            .terminate(grace)
            .unwrap_or_else(|| panic!("node ignored SIGTERM\n{}", self.guard.log_tail()));
        assert!(status.success(), "{status}\n{}", self.guard.log_tail());
    }

    /// `GET /v1/streams/{id}` as JSON (`Null` if it is not JSON).
    pub fn get(&self, id: &str) -> Value {
        let r = self.call("GET", &format!("/v1/streams/{id}"), b"", None);
        serde_json::from_slice(&r.body).unwrap_or(Value::Null)
    }

    pub fn call(&self, method: &str, path: &str, body: &[u8], ctype: Option<&str>) -> HttpResponse {
        let auth = self.token.as_ref().map(|t| format!("Bearer {t}"));
        let mut headers: Vec<(&str, &str)> = Vec::new();
        if let Some(c) = ctype {
            headers.push(("Content-Type", c));
        }
        if let Some(a) = &auth {
            headers.push(("Authorization", a));
        }
        http_request_with(method, &format!("{}{path}", self.base), body, &headers, T)
            .unwrap_or_else(|e| panic!("{method} {path}: {e}\n{}", self.guard.log_tail()))
    }

    pub fn json(&self, method: &str, path: &str, body: &Value) -> HttpResponse {
        self.call(
            method,
            path,
            body.to_string().as_bytes(),
            Some("application/json"),
        )
    }

    pub fn list(&self) -> Vec<String> {
        let r = self.call("GET", "/v1/streams", b"", None);
        assert_eq!(r.status, 200, "{}", r.body_text());
        let v: Value = serde_json::from_slice(&r.body).expect("list json");
        v.as_array()
            .expect("array")
            .iter()
            .map(|s| s["spec"]["stmId"].as_str().unwrap_or_default().to_owned())
            .collect()
    }

    pub fn wait_state(&self, id: &str, state: &str, within: Duration) -> Value {
        let start = Instant::now();
        loop {
            let r = self.call("GET", &format!("/v1/streams/{id}"), b"", None);
            let v: Value = serde_json::from_slice(&r.body).unwrap_or(Value::Null);
            if v["state"] == state {
                return v;
            }
            assert!(
                start.elapsed() < within,
                "{id} not {state} after {within:?}: {v}\n{}",
                self.guard.log_tail()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

/// Asserts a problem+json response with `status` naming `field`.
pub fn assert_problem(r: &HttpResponse, status: u16, field: Option<&str>) {
    assert_eq!(r.status, status, "{}", r.body_text());
    assert_eq!(
        r.header("content-type"),
        Some("application/problem+json"),
        "{}",
        r.body_text()
    );
    let p: Value = serde_json::from_slice(&r.body).expect("problem json");
    assert_eq!(p["status"], status);
    assert!(p["type"].as_str().is_some_and(|t| !t.is_empty()));
    assert!(p["detail"].as_str().is_some_and(|t| !t.is_empty()));
    if let Some(f) = field {
        assert_eq!(p["field"], f, "{p}");
    }
}
