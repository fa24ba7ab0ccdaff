//! Self-test of `common::tcp_proxy::TcpProxy`, the partition tool of the cluster tests: with
//! an echo server behind it, bytes pass both ways; `cut()` closes an open connection at once
//! and a new connection is accepted but never answered (no refusal, no forwarding);
//! `restore()` closes the held connection and forwards new ones again; dropping the proxy
//! frees its port.

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use common::tcp_proxy::TcpProxy;

/// A loopback echo server on a free port; counts the connections it accepted, so the test
/// can tell "held by the proxy" from "reached the server". Its threads end with the process.
fn echo_server() -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind echo");
    let addr = listener.local_addr().expect("echo addr");
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            count.fetch_add(1, Ordering::SeqCst);
            thread::spawn(move || {
                let mut buf = [0u8; 4096];
                loop {
                    match conn.read(&mut buf) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => {
                            if conn.write_all(&buf[..n]).is_err() {
                                return;
                            }
                        }
                    }
                }
            });
        }
    });
    (addr, accepted)
}

fn connect(proxy: &TcpProxy) -> TcpStream {
    let s = TcpStream::connect_timeout(&proxy.addr(), Duration::from_secs(2))
        .expect("the proxy accepts connections");
    s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    s
}

/// Sends `msg` and reads it back.
fn roundtrip(s: &mut TcpStream, msg: &[u8]) -> Vec<u8> {
    s.write_all(msg).unwrap();
    let mut got = vec![0u8; msg.len()];
    s.read_exact(&mut got).expect("echo through the proxy");
    got
}

/// True when the peer closed `s` (EOF or reset) within `within`.
fn closed_within(s: &mut TcpStream, within: Duration) -> bool {
    s.set_read_timeout(Some(within)).unwrap();
    let mut buf = [0u8; 16];
    match s.read(&mut buf) {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) => !matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut),
    }
}

#[test]
fn cut_closes_and_hangs_restore_heals_drop_frees_the_port() {
    let (target, accepted) = echo_server();
    let proxy = TcpProxy::start(target);
    assert!(proxy.addr().ip().is_loopback());
    assert_eq!(proxy.port(), proxy.addr().port());
    assert!(!proxy.is_cut());

    // Forwarding: bytes pass both ways, several times on one connection.
    let mut open = connect(&proxy);
    assert_eq!(roundtrip(&mut open, b"hello"), b"hello");
    let big: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
    assert_eq!(roundtrip(&mut open, &big), big);
    assert_eq!(accepted.load(Ordering::SeqCst), 1);

    // Cut: the open connection is closed at once ...
    proxy.cut();
    assert!(proxy.is_cut());
    let t = Instant::now();
    assert!(
        closed_within(&mut open, Duration::from_secs(2)),
        "an open connection survived the cut"
    );
    assert!(t.elapsed() < Duration::from_secs(1), "{:?}", t.elapsed());

    // ... and a new one is accepted (not refused) but gets no reply, and never reaches the
    // server.
    let mut held = connect(&proxy);
    held.write_all(b"anyone?").expect("writes are accepted");
    held.set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let mut buf = [0u8; 16];
    let err = held
        .read(&mut buf)
        .expect_err("no reply (and no close) while cut");
    assert!(
        matches!(err.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut),
        "{err}"
    );
    assert_eq!(
        accepted.load(Ordering::SeqCst),
        1,
        "a held connection was forwarded"
    );
    proxy.cut(); // idempotent: does not release the held connection
    assert!(!closed_within(&mut held, Duration::from_millis(200)));

    // Restore: the held connection is closed, new connections are forwarded again.
    proxy.restore();
    assert!(!proxy.is_cut());
    assert!(
        closed_within(&mut held, Duration::from_secs(2)),
        "a held connection survived the restore"
    );
    assert_eq!(
        accepted.load(Ordering::SeqCst),
        1,
        "held data was delivered late"
    );
    let mut again = connect(&proxy);
    assert_eq!(roundtrip(&mut again, b"back"), b"back");
    assert_eq!(accepted.load(Ordering::SeqCst), 2);

    // Drop: connections close and the port is free again.
    let addr = proxy.addr();
    drop(proxy);
    assert!(closed_within(&mut again, Duration::from_secs(2)));
    assert!(
        TcpStream::connect_timeout(&addr, Duration::from_millis(500)).is_err(),
        "the proxy still listens after drop"
    );
}

#[test]
fn works_from_inside_a_tokio_runtime_and_with_the_target_down() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    // A target nobody listens on: the client is closed, as by a server that is down.
    let dead = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    rt.block_on(async move {
        let proxy = TcpProxy::start(dead);
        let addr = proxy.addr();
        let closed = tokio::task::spawn_blocking(move || {
            let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).unwrap();
            closed_within(&mut s, Duration::from_secs(2))
        })
        .await
        .unwrap();
        assert!(closed, "a client of a dead target was left hanging");
        // Dropped inside the runtime: must not panic nor block.
        drop(proxy);
    });
}
