//! Starting the product's own synthetic WHEP source (`whep-bridge testsrc`) as a process.

use std::process::Command;
use std::time::Duration;

use super::net::{free_port, wait_http_ok};
use super::process::{bin_path, ChildGuard};

/// Starts `whep-bridge testsrc` on a free loopback port with `extra` flags and waits until
/// `/healthz` answers. Returns the guard and the base URL (`http://127.0.0.1:PORT`).
pub fn start_testsrc(extra: &[&str]) -> (ChildGuard, String) {
    start_testsrc_on(&format!("127.0.0.1:{}", free_port()), extra)
}

/// [`start_testsrc`] on a given address (e.g. to bring a killed source back on its port).
pub fn start_testsrc_on(listen: &str, extra: &[&str]) -> (ChildGuard, String) {
    let guard = ChildGuard::spawn(
        "testsrc",
        Command::new(bin_path())
            .args(["testsrc", "--listen", listen])
            .args(extra),
    )
    .expect("spawn testsrc");
    wait_http_ok(&format!("http://{listen}/healthz"), Duration::from_secs(20))
        .unwrap_or_else(|e| panic!("testsrc not ready: {e}\n{}", guard.log_tail()));
    (guard, format!("http://{listen}"))
}
