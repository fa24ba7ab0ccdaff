//! The live sessions of a test source: lookup for `DELETE`, counts for `--max-sessions`,
//! figures for `/stats`, cancellation at shutdown, and the per-client sweep of
//! `/control/block`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use serde::Serialize;
use tokio::sync::watch;

/// Where a session is in its life (reported in `/stats`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
#[repr(u8)]
pub enum Phase {
    /// Answer being built.
    Negotiating = 0,
    /// Answer sent, waiting for ICE/DTLS.
    Connecting = 1,
    /// Connected, holding back RTP (`delay_start`).
    Waiting = 2,
    Sending = 3,
    /// Connected, sending nothing (`silence_after`).
    Silent = 4,
}

impl Phase {
    fn from_u8(v: u8) -> Self {
        match v {
            1 => Self::Connecting,
            2 => Self::Waiting,
            3 => Self::Sending,
            4 => Self::Silent,
            _ => Self::Negotiating,
        }
    }
}

/// Why a session was told to end from outside its task. Every one of them ends it the same
/// way (peer connection closed, nothing else sent); the reason only goes to the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// `DELETE` of its Location.
    Deleted,
    /// The server is shutting down.
    Shutdown,
    /// Its client's `User-Agent` matched a `/control/block` rule.
    Blocked,
}

impl std::fmt::Display for Stop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Deleted => "deleted",
            Self::Shutdown => "shut down",
            Self::Blocked => "dropped (client blocked)",
        })
    }
}

/// One session as the server side sees it.
pub struct SessionEntry {
    pub id: String,
    pub name: String,
    pub app: Option<String>,
    pub freq: f64,
    pub freq_r: f64,
    /// `User-Agent` of the POST that created it: which cluster node is playing
    /// (`/control/block` matches on it).
    pub user_agent: Option<String>,
    created: Instant,
    packets_sent: AtomicU64,
    phase: AtomicU8,
    /// `None` while it may run; the first reason given wins.
    cancel: watch::Sender<Option<Stop>>,
}

impl SessionEntry {
    pub fn new(id: String, name: String, app: Option<String>, freq: f64, freq_r: f64) -> Self {
        Self {
            id,
            name,
            app,
            freq,
            freq_r,
            user_agent: None,
            created: Instant::now(),
            packets_sent: AtomicU64::new(0),
            phase: AtomicU8::new(Phase::Negotiating as u8),
            cancel: watch::channel(None).0,
        }
    }

    /// Records the client's `User-Agent`.
    pub fn with_user_agent(mut self, user_agent: Option<String>) -> Self {
        self.user_agent = user_agent;
        self
    }

    pub fn count_sent(&self) {
        self.packets_sent.fetch_add(1, Ordering::Relaxed);
    }

    pub fn packets_sent(&self) -> u64 {
        self.packets_sent.load(Ordering::Relaxed)
    }

    pub fn set_phase(&self, phase: Phase) {
        self.phase.store(phase as u8, Ordering::Relaxed);
    }

    pub fn phase(&self) -> Phase {
        Phase::from_u8(self.phase.load(Ordering::Relaxed))
    }

    /// Asks the session task to end. Only the first call counts (a session deleted while the
    /// server shuts down is logged as deleted).
    pub fn cancel(&self, why: Stop) {
        self.cancel.send_if_modified(|stop| {
            let first = stop.is_none();
            if first {
                *stop = Some(why);
            }
            first
        });
    }

    /// Holds `Some(reason)` once [`cancel`](Self::cancel) was called (also if it was called
    /// before subscribing).
    pub fn cancelled(&self) -> watch::Receiver<Option<Stop>> {
        self.cancel.subscribe()
    }

    fn stats(&self) -> SessionStats {
        SessionStats {
            id: self.id.clone(),
            name: self.name.clone(),
            app: self.app.clone(),
            user_agent: self.user_agent.clone(),
            freq: self.freq,
            freq_r: self.freq_r,
            phase: self.phase(),
            packets_sent: self.packets_sent(),
            age_ms: self.created.elapsed().as_millis() as u64,
        }
    }
}

/// One session in `GET /stats`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SessionStats {
    pub id: String,
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub app: Option<String>,
    /// `User-Agent` of the POST that created the session.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_agent: Option<String>,
    pub freq: f64,
    pub freq_r: f64,
    pub phase: Phase,
    pub packets_sent: u64,
    pub age_ms: u64,
}

/// The body of `GET /stats`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Stats {
    pub sessions: Vec<SessionStats>,
    pub encoders: usize,
}

/// The table is full (`--max-sessions`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Full;

/// All live sessions by id.
pub struct Registry {
    sessions: Mutex<HashMap<String, Arc<SessionEntry>>>,
    max: Option<usize>,
}

impl Registry {
    pub fn new(max: Option<usize>) -> Self {
        Self {
            sessions: Mutex::new(HashMap::new()),
            max,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<SessionEntry>>> {
        // Every update is a single insert/remove, so a poisoned map is still consistent.
        self.sessions.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Adds a session unless the table is full. Checked and inserted under one lock, so
    /// concurrent offers cannot overshoot the limit.
    pub fn insert(&self, entry: Arc<SessionEntry>) -> Result<(), Full> {
        let mut map = self.lock();
        if self.max.is_some_and(|m| map.len() >= m) {
            return Err(Full);
        }
        map.insert(entry.id.clone(), entry);
        Ok(())
    }

    pub fn remove(&self, id: &str) -> Option<Arc<SessionEntry>> {
        self.lock().remove(id)
    }

    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Cancels every session (shutdown); each removes itself when its task ends.
    pub fn cancel_all(&self) {
        for entry in self.lock().values() {
            entry.cancel(Stop::Shutdown);
        }
    }

    /// Removes every session `pick` selects and cancels it with `why`; returns how many.
    ///
    /// Removed at once, like on `DELETE`, so counts and `/stats` reflect it as soon as the
    /// caller answers; each task closes its peer connection right after.
    pub fn remove_where(&self, pick: impl Fn(&SessionEntry) -> bool, why: Stop) -> usize {
        let mut picked = Vec::new();
        self.lock().retain(|_, entry| {
            let keep = !pick(entry);
            if !keep {
                picked.push(Arc::clone(entry));
            }
            keep
        });
        for entry in &picked {
            entry.cancel(why);
        }
        picked.len()
    }

    /// Per-session figures, oldest first.
    pub fn stats(&self) -> Vec<SessionStats> {
        let mut all: Vec<SessionStats> = self.lock().values().map(|e| e.stats()).collect();
        all.sort_by(|a, b| b.age_ms.cmp(&a.age_ms).then_with(|| a.id.cmp(&b.id)));
        all
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(id: &str) -> Arc<SessionEntry> {
        Arc::new(SessionEntry::new(id.into(), "s".into(), None, 440.0, 660.0))
    }

    #[test]
    fn limit_is_enforced_and_freed_on_remove() {
        let r = Registry::new(Some(2));
        r.insert(entry("a")).unwrap();
        r.insert(entry("b")).unwrap();
        assert_eq!(r.insert(entry("c")), Err(Full));
        assert!(r.remove("a").is_some());
        r.insert(entry("c")).unwrap();
        assert_eq!(r.len(), 2);
        assert!(r.remove("a").is_none());
        assert!(r.remove("c").is_some());
    }

    #[test]
    fn cancel_is_seen_even_if_sent_before_waiting() {
        let e = entry("a");
        let rx = e.cancelled();
        assert_eq!(*rx.borrow(), None);
        e.cancel(Stop::Deleted);
        assert_eq!(*rx.borrow(), Some(Stop::Deleted));
        // A receiver created after the cancel sees it too, and the first reason stays.
        e.cancel(Stop::Shutdown);
        assert_eq!(*e.cancelled().borrow(), Some(Stop::Deleted));
    }

    #[test]
    fn remove_where_takes_out_and_cancels_only_the_picked() {
        let r = Registry::new(None);
        let agent = |id: &str, ua: &str| {
            Arc::new(
                SessionEntry::new(id.into(), "s".into(), None, 440.0, 660.0)
                    .with_user_agent(Some(ua.into())),
            )
        };
        let (a1, a2, b) = (
            agent("a1", "x (node a)"),
            agent("a2", "y (node a)"),
            agent("b", "x (node b)"),
        );
        for e in [&a1, &a2, &b] {
            r.insert(Arc::clone(e)).unwrap();
        }
        let is_a = |e: &SessionEntry| {
            e.user_agent
                .as_deref()
                .is_some_and(|u| u.contains("node a"))
        };
        assert_eq!(r.remove_where(is_a, Stop::Blocked), 2);
        assert_eq!(r.len(), 1);
        assert_eq!(*a1.cancelled().borrow(), Some(Stop::Blocked));
        assert_eq!(*a2.cancelled().borrow(), Some(Stop::Blocked));
        assert_eq!(*b.cancelled().borrow(), None);
        assert_eq!(r.remove_where(is_a, Stop::Blocked), 0);
        let json = serde_json::to_value(&r.stats()[0]).unwrap();
        assert_eq!(json["userAgent"], "x (node b)");
    }

    #[test]
    fn stats_report_phase_and_packets() {
        let r = Registry::new(None);
        let e = entry("a");
        r.insert(e.clone()).unwrap();
        e.set_phase(Phase::Sending);
        e.count_sent();
        e.count_sent();
        let s = r.stats();
        assert_eq!(s.len(), 1);
        assert_eq!((s[0].phase, s[0].packets_sent), (Phase::Sending, 2));
        let json = serde_json::to_value(&s[0]).unwrap();
        assert_eq!(json["packetsSent"], 2);
        assert_eq!(json["phase"], "sending");
        assert_eq!(json["freqR"], 660.0);
        assert!(
            json.get("userAgent").is_none(),
            "omitted when the client sent none"
        );
    }
}
