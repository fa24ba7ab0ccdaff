//! A minimal HTTP/1.1 server over tokio.
//!
//! Hand-written (tokio + httparse) rather than a framework because the test source must be
//! able to misbehave the way SRS does: answer an error by closing the connection without
//! writing a single byte. It supports keep-alive and `Connection: close`, `Content-Length`
//! bodies up to a cap, `Expect: 100-continue` (curl sends it for SDP offers), and bounds
//! every wait with a timeout.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::time::Instant;

/// Most headers accepted in one request.
const MAX_HEADERS: usize = 48;

/// Size and time limits of the server.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Cap on headers plus body of one request.
    pub max_request: usize,
    /// From the first byte of a request to its last.
    pub request_timeout: Duration,
    /// Idle keep-alive connection waiting for its next request.
    pub idle_timeout: Duration,
    /// Writing one response.
    pub write_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_request: 64 * 1024,
            request_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(30),
            write_timeout: Duration::from_secs(10),
        }
    }
}

/// One parsed request.
#[derive(Debug, Clone)]
pub struct Request {
    pub method: String,
    /// The request target as sent: path plus optional `?query`.
    pub target: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    keep_alive: bool,
}

impl Request {
    /// First header named `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// One response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn new(status: u16) -> Self {
        Self {
            status,
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    /// A `text/plain` response; the message gets a trailing newline for curl users.
    pub fn text(status: u16, message: impl Into<String>) -> Self {
        let mut body = message.into().into_bytes();
        body.push(b'\n');
        Self::new(status)
            .with_header("Content-Type", "text/plain; charset=utf-8")
            .with_body(body)
    }

    pub fn with_header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    pub fn with_body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = body.into();
        self
    }

    fn encode(&self, keep_alive: bool) -> Vec<u8> {
        let mut out = format!("HTTP/1.1 {} {}\r\n", self.status, reason(self.status));
        for (k, v) in &self.headers {
            out.push_str(k);
            out.push_str(": ");
            out.push_str(v);
            out.push_str("\r\n");
        }
        out.push_str(&format!("Content-Length: {}\r\n", self.body.len()));
        if !keep_alive {
            out.push_str("Connection: close\r\n");
        }
        out.push_str("\r\n");
        let mut bytes = out.into_bytes();
        bytes.extend_from_slice(&self.body);
        bytes
    }
}

/// What the server does with a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    Respond(Response),
    /// Close the connection without any response (how SRS reports errors).
    Close,
}

/// The application behind the server.
pub trait Handler: Send + Sync + 'static {
    fn handle(&self, req: Request) -> impl Future<Output = Reply> + Send;
    /// A request the server itself rejected (malformed, too large, ...), with the status a
    /// plain HTTP server would use.
    fn reject(&self, status: u16, message: &str) -> Reply;
}

/// Accepts connections until `shutdown` turns true; each connection runs on its own task.
pub async fn serve<H: Handler>(
    listener: TcpListener,
    handler: Arc<H>,
    limits: Limits,
    shutdown: watch::Receiver<bool>,
) {
    let mut stop = shutdown.clone();
    loop {
        tokio::select! {
            () = stopped(&mut stop) => return,
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let _ = stream.set_nodelay(true);
                    let handler = Arc::clone(&handler);
                    let shutdown = shutdown.clone();
                    tokio::spawn(async move {
                        connection(stream, handler, limits, shutdown).await;
                        tracing::trace!(%peer, "HTTP connection closed");
                    });
                }
                Err(e) => {
                    // Typically EMFILE: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    }
}

/// Resolves once `rx` turns true (or its sender is gone).
async fn stopped(rx: &mut watch::Receiver<bool>) {
    let _ = rx.wait_for(|s| *s).await;
}

/// Why no request could be read.
enum ReadError {
    /// Connection closed, idle, timed out mid-request, or shutting down: just close.
    Gone,
    /// A request the client got wrong: tell it (or close, as the handler decides).
    Bad(u16, &'static str),
}

async fn connection<H: Handler>(
    mut stream: TcpStream,
    handler: Arc<H>,
    limits: Limits,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut buf = Vec::with_capacity(4096);
    loop {
        let req = match read_request(&mut stream, &mut buf, &limits, &mut shutdown).await {
            Ok(req) => req,
            Err(ReadError::Gone) => return,
            Err(ReadError::Bad(status, message)) => {
                if let Reply::Respond(resp) = handler.reject(status, message) {
                    let _ = write(&mut stream, &resp.encode(false), &limits).await;
                }
                return;
            }
        };
        let keep_alive = req.keep_alive;
        match handler.handle(req).await {
            Reply::Close => return,
            Reply::Respond(resp) => {
                let keep_alive = keep_alive && !*shutdown.borrow();
                if write(&mut stream, &resp.encode(keep_alive), &limits)
                    .await
                    .is_err()
                    || !keep_alive
                {
                    return;
                }
            }
        }
    }
}

async fn write(stream: &mut TcpStream, bytes: &[u8], limits: &Limits) -> Result<(), ()> {
    match tokio::time::timeout(limits.write_timeout, stream.write_all(bytes)).await {
        Ok(Ok(())) => Ok(()),
        _ => Err(()),
    }
}

/// Reads one complete request from `stream`, keeping any pipelined bytes in `buf`.
async fn read_request(
    stream: &mut TcpStream,
    buf: &mut Vec<u8>,
    limits: &Limits,
    shutdown: &mut watch::Receiver<bool>,
) -> Result<Request, ReadError> {
    let mut deadline = (!buf.is_empty()).then(|| Instant::now() + limits.request_timeout);
    let mut sent_continue = false;
    loop {
        if let Some(head) = parse_head(buf)? {
            let total = head.len + head.content_length;
            if total > limits.max_request {
                return Err(ReadError::Bad(413, "request too large"));
            }
            if buf.len() >= total {
                let body = buf[head.len..total].to_vec();
                buf.drain(..total);
                return Ok(Request {
                    method: head.method,
                    target: head.target,
                    headers: head.headers,
                    body,
                    keep_alive: head.keep_alive,
                });
            }
            if head.expect_continue && !sent_continue {
                sent_continue = true;
                write(stream, b"HTTP/1.1 100 Continue\r\n\r\n", limits)
                    .await
                    .map_err(|()| ReadError::Gone)?;
            }
        } else if buf.len() > limits.max_request {
            return Err(ReadError::Bad(431, "request headers too large"));
        }

        let wait_until = deadline.unwrap_or_else(|| Instant::now() + limits.idle_timeout);
        let mut chunk = [0u8; 8192];
        let n = tokio::select! {
            () = stopped(shutdown), if deadline.is_none() => return Err(ReadError::Gone),
            r = tokio::time::timeout_at(wait_until, stream.read(&mut chunk)) => match r {
                Ok(Ok(n)) if n > 0 => n,
                _ => return Err(ReadError::Gone),
            }
        };
        buf.extend_from_slice(&chunk[..n]);
        deadline.get_or_insert_with(|| Instant::now() + limits.request_timeout);
    }
}

/// The parsed head of a request.
struct Head {
    len: usize,
    method: String,
    target: String,
    headers: Vec<(String, String)>,
    content_length: usize,
    keep_alive: bool,
    expect_continue: bool,
}

/// Parses the request head if it is complete.
fn parse_head(buf: &[u8]) -> Result<Option<Head>, ReadError> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    let len = match req.parse(buf) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => {
            return Err(ReadError::Bad(431, "too many headers"))
        }
        Err(_) => return Err(ReadError::Bad(400, "malformed request")),
    };
    let (Some(method), Some(target), Some(version)) = (req.method, req.path, req.version) else {
        return Err(ReadError::Bad(400, "malformed request"));
    };
    let mut out = Head {
        len,
        method: method.to_owned(),
        target: target.to_owned(),
        headers: Vec::with_capacity(req.headers.len()),
        content_length: 0,
        // HTTP/1.1 keeps the connection by default, HTTP/1.0 closes it.
        keep_alive: version == 1,
        expect_continue: false,
    };
    for h in req.headers.iter() {
        let value = std::str::from_utf8(h.value)
            .map_err(|_| ReadError::Bad(400, "header value is not UTF-8"))?
            .trim()
            .to_owned();
        let name = h.name;
        if name.eq_ignore_ascii_case("content-length") {
            out.content_length = value
                .parse()
                .map_err(|_| ReadError::Bad(400, "bad Content-Length"))?;
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            return Err(ReadError::Bad(411, "send the body with a Content-Length"));
        } else if name.eq_ignore_ascii_case("connection") {
            let v = value.to_ascii_lowercase();
            if v.split(',').any(|t| t.trim() == "close") {
                out.keep_alive = false;
            } else if v.split(',').any(|t| t.trim() == "keep-alive") {
                out.keep_alive = true;
            }
        } else if name.eq_ignore_ascii_case("expect") {
            out.expect_continue = value.eq_ignore_ascii_case("100-continue");
        }
        out.headers.push((name.to_owned(), value));
    }
    Ok(Some(out))
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        201 => "Created",
        204 => "No Content",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        411 => "Length Required",
        413 => "Content Too Large",
        415 => "Unsupported Media Type",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "Unknown",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(raw: &str) -> Option<Head> {
        match parse_head(raw.as_bytes()) {
            Ok(h) => h,
            Err(ReadError::Bad(s, m)) => panic!("{s} {m}"),
            Err(ReadError::Gone) => panic!("gone"),
        }
    }

    fn bad(raw: &str) -> u16 {
        match parse_head(raw.as_bytes()) {
            Err(ReadError::Bad(s, _)) => s,
            _ => panic!("accepted {raw:?}"),
        }
    }

    #[test]
    fn parses_head_fields() {
        let h = head("POST /whep/a?freq=1 HTTP/1.1\r\nHost: x\r\nContent-Length: 12\r\nExpect: 100-continue\r\n\r\nbody").unwrap();
        assert_eq!(h.method, "POST");
        assert_eq!(h.target, "/whep/a?freq=1");
        assert_eq!(h.content_length, 12);
        assert!(h.keep_alive && h.expect_continue);
        assert_eq!(h.len, 83);
    }

    #[test]
    fn partial_head_waits_for_more() {
        assert!(head("GET /healthz HTTP/1.1\r\nHost:").is_none());
    }

    #[test]
    fn connection_header_decides_keep_alive() {
        assert!(
            !head("GET / HTTP/1.1\r\nConnection: close\r\n\r\n")
                .unwrap()
                .keep_alive
        );
        assert!(!head("GET / HTTP/1.0\r\n\r\n").unwrap().keep_alive);
        assert!(
            head("GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n")
                .unwrap()
                .keep_alive
        );
    }

    #[test]
    fn rejects_what_it_cannot_serve() {
        assert_eq!(bad("GET / HTTP/1.1\r\nContent-Length: x\r\n\r\n"), 400);
        assert_eq!(
            bad("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"),
            411
        );
        assert_eq!(bad("GET /\x01 HTTP/1.1\r\n\r\n"), 400);
    }

    #[test]
    fn response_encoding() {
        let r = Response::text(404, "no such stream").with_header("X-A", "b");
        let s = String::from_utf8(r.encode(false)).unwrap();
        assert_eq!(
            s,
            "HTTP/1.1 404 Not Found\r\nContent-Type: text/plain; charset=utf-8\r\nX-A: b\r\n\
             Content-Length: 15\r\nConnection: close\r\n\r\nno such stream\n"
        );
        let s = String::from_utf8(Response::new(200).encode(true)).unwrap();
        assert_eq!(s, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
    }
}
