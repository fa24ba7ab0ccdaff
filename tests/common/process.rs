//! Child processes owned by a test: the product binary or the Python interop source.
//!
//! A test that panics must not leave a server running (it would hold ports and keep sending
//! traffic into later tests), so [`ChildGuard`] kills its process on drop. Output goes to
//! files rather than pipes: a pipe nobody drains fills up and blocks the child, and files can
//! be read at any time while the child runs. When the owning test panics, the tail of both
//! logs is printed so the failure explains itself.

use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant};

/// Path of the `whep-bridge` binary cargo built for this integration test.
pub fn bin_path() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_whep-bridge"))
}

/// How much of each log is echoed when a test panics.
const LOG_TAIL_CHARS: usize = 6_000;

/// A spawned process that is killed (SIGKILL) and reaped when the guard is dropped.
pub struct ChildGuard {
    name: String,
    child: Child,
    dir: tempfile::TempDir,
    exit: Option<ExitStatus>,
}

impl ChildGuard {
    /// Spawn `cmd` with stdin closed and stdout/stderr captured into files in a fresh temp dir.
    pub fn spawn(name: &str, cmd: &mut Command) -> io::Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix(&format!("{name}-logs-"))
            .tempdir()?;
        let stdout = File::create(dir.path().join("stdout.log"))?;
        let stderr = File::create(dir.path().join("stderr.log"))?;
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::from(stdout))
            .stderr(Stdio::from(stderr))
            .spawn()?;
        Ok(Self {
            name: name.to_string(),
            child,
            dir,
            exit: None,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn stdout_path(&self) -> PathBuf {
        self.dir.path().join("stdout.log")
    }

    pub fn stderr_path(&self) -> PathBuf {
        self.dir.path().join("stderr.log")
    }

    /// Everything the child wrote to stdout so far.
    pub fn stdout(&self) -> String {
        read_lossy(&self.stdout_path())
    }

    /// Everything the child wrote to stderr so far.
    pub fn stderr(&self) -> String {
        read_lossy(&self.stderr_path())
    }

    /// stdout followed by stderr (for searching; ordering between the two is not kept).
    pub fn output(&self) -> String {
        format!("{}{}", self.stdout(), self.stderr())
    }

    /// Exit status if the child has exited (reaps it).
    pub fn try_wait(&mut self) -> Option<ExitStatus> {
        if self.exit.is_none() {
            self.exit = self.child.try_wait().ok().flatten();
        }
        self.exit
    }

    pub fn is_running(&mut self) -> bool {
        self.try_wait().is_none()
    }

    /// Wait until `needle` appears in stdout or stderr. Fails early, with the logs, if the
    /// child exits first — a crashed server should not cost the whole timeout.
    pub fn wait_for_output(&mut self, needle: &str, timeout: Duration) -> Result<(), String> {
        let deadline = Instant::now() + timeout;
        loop {
            if self.output().contains(needle) {
                return Ok(());
            }
            if let Some(status) = self.try_wait() {
                // One last look: the line may have been written just before exiting.
                if self.output().contains(needle) {
                    return Ok(());
                }
                return Err(format!(
                    "{} exited ({status}) before printing {needle:?}\n{}",
                    self.name,
                    self.log_tail()
                ));
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "{} did not print {needle:?} within {timeout:?}\n{}",
                    self.name,
                    self.log_tail()
                ));
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// Wait up to `timeout` for the child to exit by itself.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.try_wait() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// Send SIGTERM (graceful shutdown path) and wait up to `grace` for the exit; the caller
    /// decides what a timeout means. Uses the `kill` utility to avoid a libc dependency.
    pub fn terminate(&mut self, grace: Duration) -> Option<ExitStatus> {
        if self.try_wait().is_none() {
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(self.pid().to_string())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
        self.wait_exit(grace)
    }

    /// SIGKILL and reap. Idempotent.
    pub fn kill(&mut self) {
        if self.try_wait().is_none() {
            let _ = self.child.kill();
            self.exit = self.child.wait().ok();
        }
    }

    /// Last [`LOG_TAIL_CHARS`] characters of each log, labelled, for failure messages.
    pub fn log_tail(&self) -> String {
        format!(
            "----- {} stdout (tail) -----\n{}\n----- {} stderr (tail) -----\n{}",
            self.name,
            tail(&self.stdout(), LOG_TAIL_CHARS),
            self.name,
            tail(&self.stderr(), LOG_TAIL_CHARS)
        )
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        self.kill();
        if thread::panicking() {
            eprintln!("{}", self.log_tail());
        }
    }
}

fn read_lossy(path: &Path) -> String {
    fs::read(path)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default()
}

fn tail(s: &str, max_chars: usize) -> &str {
    let count = s.chars().count();
    if count <= max_chars {
        return s;
    }
    let skip = count - max_chars;
    let idx = s.char_indices().nth(skip).map_or(0, |(i, _)| i);
    &s[idx..]
}
