//! `RedisServer`: a real `redis-server` on a free loopback port, no persistence, killed on
//! drop. `.ci/run` installs `redis-server`; a missing binary fails the test with that advice.

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

    /// On a given port (e.g. to bring Redis back after a restart drill).
    pub fn start_on(port: u16) -> Self {
        let guard = ChildGuard::spawn(
            "redis",
            Command::new("redis-server").args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ]),
        )
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
