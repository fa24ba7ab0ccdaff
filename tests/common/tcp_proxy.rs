//! `TcpProxy`: a loopback TCP forwarder that a test can cut like a network partition.
//!
//! Partition tests (a node cut off from Redis, from its consumer, ...) need the link to fail
//! the way a real network fails: packets stop, nobody says so. Killing the server process
//! would be a different failure (connections refused at once, data lost), so the proxy sits
//! between client and server instead:
//! - forwarding: every accepted connection is piped to `target` both ways;
//! - [`TcpProxy::cut`]: every open connection is closed at once, and new connections are
//!   accepted but never forwarded nor answered, so a client's request waits for its own
//!   timeout — not a quick "connection refused" that would let it fail fast;
//! - [`TcpProxy::restore`]: connections held during the cut are closed (as an attempt that
//!   timed out; the client reconnects) and new ones are forwarded again. Held data is never
//!   delivered late: a stale write arriving after the heal would make tests unpredictable.
//!
//! It runs on its own thread with its own tokio runtime, so it works the same from a plain
//! `#[test]`, a `#[tokio::test]` or inside an actix system, and dropping it stops everything.

use std::net::{SocketAddr, TcpListener as StdListener};
use std::thread::JoinHandle;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{oneshot, watch};

/// A running proxy on `127.0.0.1:<free port>` in front of one target address.
pub struct TcpProxy {
    addr: SocketAddr,
    /// `true` while cut. Every connection task watches it: any flip ends the connection
    /// (a forwarded one at the cut, a held one at the restore), and the sender being dropped
    /// ends them all.
    cut: Option<watch::Sender<bool>>,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl TcpProxy {
    /// Binds a free loopback port and starts forwarding to `target`.
    ///
    /// Panics if the port cannot be bound or the runtime cannot start: this is test
    /// scaffolding, and a failure here must stop the test with the reason.
    pub fn start(target: SocketAddr) -> TcpProxy {
        // Bound here, synchronously, so `addr()` is valid before the thread even runs.
        let listener = StdListener::bind("127.0.0.1:0").expect("bind proxy 127.0.0.1:0");
        let addr = listener.local_addr().expect("proxy local_addr");
        listener
            .set_nonblocking(true)
            .expect("proxy listener non-blocking");
        let (cut_tx, cut_rx) = watch::channel(false);
        let (stop_tx, stop_rx) = oneshot::channel();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("proxy runtime");
        let thread = std::thread::Builder::new()
            .name(format!("tcp-proxy-{}", addr.port()))
            .spawn(move || {
                runtime.block_on(async move {
                    let listener = match TcpListener::from_std(listener) {
                        Ok(l) => l,
                        Err(e) => {
                            eprintln!("tcp proxy {addr}: cannot register listener: {e}");
                            return;
                        }
                    };
                    tokio::select! {
                        _ = accept_loop(listener, target, cut_rx) => {}
                        _ = stop_rx => {}
                    }
                });
                // Dropping the runtime here cancels every connection task, closing their
                // sockets: nothing outlives the proxy.
                drop(runtime);
            })
            .expect("spawn proxy thread");
        TcpProxy {
            addr,
            cut: Some(cut_tx),
            stop: Some(stop_tx),
            thread: Some(thread),
        }
    }

    /// Where clients connect (`127.0.0.1:<port>`).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// Partition: closes every open connection now; new connections hang (accepted, never
    /// forwarded, never answered) until [`TcpProxy::restore`]. Idempotent.
    pub fn cut(&self) {
        self.set_cut(true);
    }

    /// Heals the partition: connections held during the cut are closed, new connections are
    /// forwarded again. Idempotent.
    pub fn restore(&self) {
        self.set_cut(false);
    }

    /// Whether the proxy is currently cut.
    pub fn is_cut(&self) -> bool {
        self.cut.as_ref().is_some_and(|c| *c.borrow())
    }

    fn set_cut(&self, cut: bool) {
        if let Some(tx) = &self.cut {
            // Only a real flip notifies, so a repeated cut() does not look like a restore to
            // the connections held meanwhile.
            tx.send_if_modified(|state| {
                let changed = *state != cut;
                *state = cut;
                changed
            });
        }
    }
}

impl Drop for TcpProxy {
    fn drop(&mut self) {
        self.cut.take();
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

async fn accept_loop(listener: TcpListener, target: SocketAddr, cut: watch::Receiver<bool>) {
    loop {
        match listener.accept().await {
            Ok((client, _)) => {
                tokio::spawn(connection(client, target, cut.clone()));
            }
            // Out of file descriptors or a client that vanished mid-accept: keep serving.
            Err(_) => tokio::time::sleep(std::time::Duration::from_millis(20)).await,
        }
    }
}

/// One client connection: forwarded while the link is up, held while it is cut; ends at the
/// first flip of the link state or when the proxy stops (the watch sender is dropped).
async fn connection(mut client: TcpStream, target: SocketAddr, mut cut: watch::Receiver<bool>) {
    // The link state when the task starts decides the connection's fate; marking it seen
    // makes `changed()` below wake only on a later flip.
    if *cut.borrow_and_update() {
        // Hold the socket without reading: the client's bytes sit unanswered, as in a
        // partition. Returning drops (closes) it.
        let _ = cut.changed().await;
        return;
    }
    let mut upstream = tokio::select! {
        up = TcpStream::connect(target) => match up {
            Ok(up) => up,
            // Target down: close the client, as a real server that is down would.
            Err(_) => return,
        },
        _ = cut.changed() => return,
    };
    let _ = client.set_nodelay(true);
    let _ = upstream.set_nodelay(true);
    tokio::select! {
        _ = tokio::io::copy_bidirectional(&mut client, &mut upstream) => {}
        _ = cut.changed() => {}
    }
}
