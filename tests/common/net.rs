//! Loopback networking helpers: free ports and a tiny blocking HTTP/1.1 GET.
//!
//! Deliberately dependency-free (plain `std::net`) so that readiness probes do not share any
//! HTTP stack with the product under test: a probe that used the product's own client could
//! hide a bug in it.

use std::io::{self, Read, Write};
use std::net::{TcpListener, TcpStream, ToSocketAddrs, UdpSocket};
use std::thread;
use std::time::{Duration, Instant};

/// A TCP port on 127.0.0.1 that was free a moment ago.
///
/// The port is released before returning, so another process could grab it in between; on a
/// test machine that race is rare, and it lets the port be handed to a child process.
pub fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    listener.local_addr().expect("local_addr").port()
}

/// A UDP port on 127.0.0.1 that was free a moment ago (same caveat as [`free_port`]).
pub fn free_udp_port() -> u16 {
    let socket = UdpSocket::bind("127.0.0.1:0").expect("bind udp 127.0.0.1:0");
    socket.local_addr().expect("local_addr").port()
}

/// A parsed HTTP response (headers lower-cased, body de-chunked).
#[derive(Debug, Clone)]
pub struct HttpResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl HttpResponse {
    /// First header with that (case-insensitive) name.
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn body_text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Split `http://host:port/path?query` into (authority, path-and-query).
fn split_http_url(url: &str) -> io::Result<(String, String)> {
    let parsed = url::Url::parse(url).map_err(|e| io::Error::other(format!("{url}: {e}")))?;
    if parsed.scheme() != "http" {
        return Err(io::Error::other(format!(
            "{url}: only http:// is supported"
        )));
    }
    let host = parsed
        .host_str()
        .ok_or_else(|| io::Error::other(format!("{url}: no host")))?;
    let port = parsed.port_or_known_default().unwrap_or(80);
    let mut path = parsed.path().to_string();
    if let Some(q) = parsed.query() {
        path.push('?');
        path.push_str(q);
    }
    Ok((format!("{host}:{port}"), path))
}

/// One blocking HTTP request with `Connection: close`; every step is bounded by `timeout`.
pub fn http_request(
    method: &str,
    url: &str,
    body: &[u8],
    content_type: Option<&str>,
    timeout: Duration,
) -> io::Result<HttpResponse> {
    let headers: Vec<(&str, &str)> = content_type
        .map(|ct| ("Content-Type", ct))
        .into_iter()
        .collect();
    http_request_with(method, url, body, &headers, timeout)
}

/// [`http_request`] with arbitrary extra request headers.
pub fn http_request_with(
    method: &str,
    url: &str,
    body: &[u8],
    headers: &[(&str, &str)],
    timeout: Duration,
) -> io::Result<HttpResponse> {
    let (authority, path) = split_http_url(url)?;
    let addr = authority
        .to_socket_addrs()?
        .next()
        .ok_or_else(|| io::Error::other(format!("{authority}: no address")))?;
    let mut stream = TcpStream::connect_timeout(&addr, timeout)?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    stream.write_all(req.as_bytes())?;
    // A server may answer (e.g. 413) and close before reading a large body.
    let _ = stream.write_all(body);
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw)?;
    parse_response(&raw)
}

/// Blocking `GET url`.
pub fn http_get(url: &str, timeout: Duration) -> io::Result<HttpResponse> {
    http_request("GET", url, &[], None, timeout)
}

fn parse_response(raw: &[u8]) -> io::Result<HttpResponse> {
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| io::Error::other("incomplete HTTP response head"))?;
    let head = String::from_utf8_lossy(&raw[..end]);
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse::<u16>().ok())
        .ok_or_else(|| io::Error::other(format!("bad status line {status_line:?}")))?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let rest = &raw[end + 4..];
    let chunked = headers
        .iter()
        .any(|(k, v)| k == "transfer-encoding" && v.to_ascii_lowercase().contains("chunked"));
    let body = if chunked {
        dechunk(rest)?
    } else {
        rest.to_vec()
    };
    Ok(HttpResponse {
        status,
        headers,
        body,
    })
}

fn dechunk(mut data: &[u8]) -> io::Result<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let line_end = data
            .windows(2)
            .position(|w| w == b"\r\n")
            .ok_or_else(|| io::Error::other("bad chunk header"))?;
        let size_text = String::from_utf8_lossy(&data[..line_end]);
        let size_hex = size_text.split(';').next().unwrap_or("").trim();
        let size = usize::from_str_radix(size_hex, 16)
            .map_err(|_| io::Error::other(format!("bad chunk size {size_hex:?}")))?;
        data = &data[line_end + 2..];
        if size == 0 {
            return Ok(out);
        }
        if data.len() < size {
            return Err(io::Error::other("truncated chunk"));
        }
        out.extend_from_slice(&data[..size]);
        data = data.get(size + 2..).unwrap_or(&[]);
    }
}

/// Poll `GET url` until it answers 2xx; returns the last failure after `timeout`.
///
/// Used to wait for a child process's HTTP server to come up instead of sleeping a guessed
/// amount of time.
pub fn wait_http_ok(url: &str, timeout: Duration) -> Result<HttpResponse, String> {
    let deadline = Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let per_try = left.clamp(Duration::from_millis(50), Duration::from_secs(2));
        let last = match http_get(url, per_try) {
            Ok(r) if (200..300).contains(&r.status) => return Ok(r),
            Ok(r) => format!("status {} body {:?}", r.status, r.body_text()),
            Err(e) => e.to_string(),
        };
        if Instant::now() >= deadline {
            return Err(format!("{url} not ready after {timeout:?}: {last}"));
        }
        thread::sleep(Duration::from_millis(50));
    }
}

/// [`wait_http_ok`] for async tests: runs the blocking poll off the runtime's threads so a
/// server living on the same runtime keeps running meanwhile.
pub async fn wait_http_ok_async(url: &str, timeout: Duration) -> Result<HttpResponse, String> {
    let url = url.to_string();
    tokio::task::spawn_blocking(move || wait_http_ok(&url, timeout))
        .await
        .map_err(|e| format!("probe task failed: {e}"))?
}
