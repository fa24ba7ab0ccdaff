//! `RedisServer`: a real `redis-server` on a free loopback port, killed on drop; no
//! persistence, or an append-only file in a given directory (restart drills). `.ci/run`
//! installs `redis-server`; a missing binary fails the test with that advice.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::{Duration, Instant};

use super::net::free_port;
use super::process::ChildGuard;

pub struct RedisServer {
    pub guard: ChildGuard,
    pub port: u16,
}

impl RedisServer {
    pub fn start() -> Self {
        Self::start_on(free_port())
    }

    /// On a given port, without persistence.
    pub fn start_on(port: u16) -> Self {
        Self::spawn(port, &["--appendonly", "no"])
    }

    /// On a given port with every write fsynced to an append-only file in `dir`: a restart
    /// on the same port and directory comes back with the same data, as a production Redis
    /// with AOF does.
    pub fn start_persistent(port: u16, dir: &std::path::Path) -> Self {
        let dir = dir.to_string_lossy();
        Self::spawn(
            port,
            &[
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
                "--dir",
                &dir,
            ],
        )
    }

    fn spawn(port: u16, extra: &[&str]) -> Self {
        let port_s = port.to_string();
        let mut args = vec!["--port", &port_s, "--bind", "127.0.0.1", "--save", ""];
        args.extend_from_slice(extra);
        let guard = ChildGuard::spawn("redis", Command::new("redis-server").args(&args))
            .unwrap_or_else(|e| {
                panic!("cannot run redis-server ({e}): install it (apt-get install redis-server)")
            });
        let server = Self { guard, port };
        let deadline = Instant::now() + Duration::from_secs(10);
        while !server.ping() {
            assert!(
                Instant::now() < deadline,
                "redis-server did not answer PING\n{}",
                server.guard.log_tail()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        server
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// One raw `PING` (no client library: the harness must not depend on what it tests).
    pub fn ping(&self) -> bool {
        let Ok(mut s) = TcpStream::connect(("127.0.0.1", self.port)) else {
            return false;
        };
        let _ = s.set_read_timeout(Some(Duration::from_secs(1)));
        if s.write_all(b"PING\r\n").is_err() {
            return false;
        }
        let mut buf = [0u8; 7];
        s.read_exact(&mut buf).is_ok() && &buf == b"+PONG\r\n"
    }
}
