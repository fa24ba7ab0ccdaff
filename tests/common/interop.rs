//! Launcher for the independent aiortc WHEP source (`tests/interop/aiortc_whep.py`).
//!
//! The interop test needs a WHEP server that shares no code with whep-bridge; this module
//! finds a Python that has aiortc, starts the script on a free loopback port and waits until
//! it answers, so the test itself only deals with URLs.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use super::net::{free_port, wait_http_ok};
use super::process::ChildGuard;

/// The server script, found relative to the crate so tests work from any directory.
pub const AIORTC_WHEP_SCRIPT: &str =
    concat!(env!("CARGO_MANIFEST_DIR"), "/tests/interop/aiortc_whep.py");

/// pip requirements of the script (`python3 -m venv V && V/bin/pip install -r ...`).
pub const INTEROP_REQUIREMENTS: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/interop/requirements.txt"
);

/// A Python interpreter that can import aiortc and aiohttp, or `None`.
///
/// Looks at `$INTEROP_PYTHON`, then the repository's `.venv/bin/python` (which `.ci/run`
/// creates), then `/tmp/venv/bin/python`, then `python3`. The import check runs the
/// interpreter once.
pub fn interop_python() -> Option<PathBuf> {
    let mut candidates: Vec<PathBuf> = Vec::new();
    if let Some(p) = std::env::var_os("INTEROP_PYTHON") {
        candidates.push(PathBuf::from(p));
    }
    candidates.push(PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/.venv/bin/python"
    )));
    candidates.push(PathBuf::from("/tmp/venv/bin/python"));
    candidates.push(PathBuf::from("python3"));
    candidates.into_iter().find(|py| {
        Command::new(py)
            .args(["-c", "import aiortc, aiohttp"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    })
}

/// A running `aiortc_whep.py` (killed on drop through its [`ChildGuard`]).
pub struct AiortcWhep {
    pub child: ChildGuard,
    pub port: u16,
}

impl AiortcWhep {
    /// Start the server with left/right tones `freq_l`/`freq_r` and wait until `/health`
    /// answers. Errors carry the child's logs.
    pub fn start(freq_l: f64, freq_r: f64) -> Result<Self, String> {
        let python = interop_python().ok_or_else(|| {
            format!("no Python with aiortc+aiohttp; install {INTEROP_REQUIREMENTS} into a venv and set INTEROP_PYTHON")
        })?;
        let port = free_port();
        let mut cmd = Command::new(python);
        cmd.arg(AIORTC_WHEP_SCRIPT)
            .args(["--host", "127.0.0.1", "--port", &port.to_string()])
            .args([
                "--freq",
                &freq_l.to_string(),
                "--freq-r",
                &freq_r.to_string(),
            ])
            .arg("--verbose");
        let mut child = ChildGuard::spawn("aiortc_whep", &mut cmd)
            .map_err(|e| format!("spawn aiortc_whep.py: {e}"))?;
        child.wait_for_output("listening on", Duration::from_secs(20))?;
        wait_http_ok(
            &format!("http://127.0.0.1:{port}/health"),
            Duration::from_secs(5),
        )
        .map_err(|e| format!("{e}\n{}", child.log_tail()))?;
        Ok(Self { child, port })
    }

    /// WHEP endpoint for stream `name` (any name is accepted by the script).
    pub fn whep_url(&self, name: &str) -> String {
        format!("http://127.0.0.1:{}/whep/{name}", self.port)
    }
}
