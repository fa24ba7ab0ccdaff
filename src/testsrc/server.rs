//! The HTTP side of the test source: WHEP offers in, sessions out, the SRS-like error
//! mode where every failure is a silently closed connection, and the control routes that
//! make the source unreachable for chosen clients.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;
use webrtc::api::API;

use super::behaviour::Behaviour;
use super::block::{self, Blocklist};
use super::config::TestSrcArgs;
use super::http::{Handler, Reply, Request, Response};
use super::hub::ToneHub;
use super::registry::{Registry, SessionEntry, Stats, Stop};
use super::routes::{self, Dialect, Route};
use super::session::{self, Session};
use crate::config::RtcConfig;
use crate::rtc::sender::SendSession;

/// Seconds a client is told to wait when the server is full.
const RETRY_AFTER_SECS: u32 = 5;

/// Shared state of one test-source server.
pub(crate) struct Server {
    api: API,
    rtc: RtcConfig,
    defaults: Behaviour,
    hub: ToneHub,
    registry: Arc<Registry>,
    /// `/control/block` rules.
    blocked: Blocklist,
    srs_errors: bool,
    srs_location: bool,
    streams: Vec<String>,
    gather_timeout: Duration,
    connect_timeout: Duration,
    closing: AtomicBool,
    /// Session tasks still running (they outlive their registry entry while closing).
    tasks: Arc<AtomicUsize>,
}

/// Decrements the running-task count however the task ends.
struct TaskGuard(Arc<AtomicUsize>);

impl Drop for TaskGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Server {
    pub(crate) fn new(args: &TestSrcArgs, api: API, rtc: RtcConfig) -> Self {
        Self {
            api,
            rtc,
            defaults: args.behaviour(),
            hub: ToneHub::default(),
            registry: Arc::new(Registry::new(args.max_sessions)),
            blocked: Blocklist::default(),
            srs_errors: args.srs_errors,
            srs_location: args.srs_location,
            streams: args.streams.clone(),
            gather_timeout: args.gather_timeout,
            connect_timeout: args.connect_timeout,
            closing: AtomicBool::new(false),
            tasks: Arc::new(AtomicUsize::new(0)),
        }
    }

    pub(crate) fn sessions(&self) -> usize {
        self.registry.len()
    }

    pub(crate) fn stats(&self) -> Stats {
        Stats {
            sessions: self.registry.stats(),
            encoders: self.hub.encoders(),
        }
    }

    /// Refuses new sessions and ends the live ones; waits (bounded) for their tasks to close
    /// their peer connections.
    pub(crate) async fn shut_down(&self, wait: Duration) {
        self.begin_shutdown();
        let deadline = Instant::now() + wait;
        while self.tasks.load(Ordering::SeqCst) > 0 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// The synchronous part of [`shut_down`](Self::shut_down) (also used on drop).
    pub(crate) fn begin_shutdown(&self) {
        self.closing.store(true, Ordering::SeqCst);
        self.registry.cancel_all();
    }

    /// An error reply: plain HTTP, or a closed connection in SRS error mode.
    fn error(&self, status: u16, message: impl Into<String>) -> Reply {
        if self.srs_errors {
            Reply::Close
        } else {
            Reply::Respond(Response::text(status, message))
        }
    }

    /// How a blocked client is refused: like every other error (a closed connection in SRS
    /// error mode), and in plain mode a 503 *without* `Retry-After`, because waiting does not
    /// help a client the server cannot reach: it should go elsewhere.
    fn refuse_blocked(&self, rule: &str) -> Reply {
        self.error(
            503,
            format!("unreachable for this client (User-Agent matches blocked {rule:?})"),
        )
    }

    /// `/control/block`: refuse this agent from now on and drop its live sessions.
    ///
    /// The rule goes in before the sweep, and `play` checks the rule again after answering,
    /// so an offer racing with the block cannot leave a session behind.
    fn block(&self, agent: &str) -> Reply {
        self.blocked.add(agent);
        let dropped = self.registry.remove_where(
            |e| block::matches(agent, e.user_agent.as_deref()),
            Stop::Blocked,
        );
        tracing::info!(agent, dropped, "testsrc: client blocked");
        self.control_reply(dropped)
    }

    /// `/control/unblock`: lift one rule, or all of them.
    fn unblock(&self, agent: Option<&str>) -> Reply {
        self.blocked.remove(agent);
        tracing::info!(agent = agent.unwrap_or("*"), "testsrc: client unblocked");
        self.control_reply(0)
    }

    /// `{"blocked":[rules in effect],"dropped":N}`.
    fn control_reply(&self, dropped: usize) -> Reply {
        let body = serde_json::json!({ "blocked": self.blocked.rules(), "dropped": dropped });
        Reply::Respond(
            Response::new(200)
                .with_header("Content-Type", "application/json")
                .with_body(body.to_string()),
        )
    }

    async fn play(
        &self,
        req: &Request,
        name: String,
        app: Option<String>,
        dialect: Dialect,
        query: &[(String, String)],
    ) -> Reply {
        if self.closing.load(Ordering::SeqCst) {
            return self.error(503, "shutting down");
        }
        let user_agent = req.header("user-agent").map(str::to_owned);
        // First: to a blocked client the server is unreachable, whatever it asks for.
        if let Some(rule) = self.blocked.blocking(user_agent.as_deref()) {
            return self.refuse_blocked(&rule);
        }
        if !self.streams.is_empty() && !self.streams.contains(&name) {
            return self.error(404, format!("no stream {name:?} here"));
        }
        if let Some(ct) = req.header("content-type") {
            let mime = ct.split(';').next().unwrap_or("").trim();
            if !mime.eq_ignore_ascii_case("application/sdp") {
                return self.error(415, "the offer must be Content-Type: application/sdp");
            }
        }
        let offer = match std::str::from_utf8(&req.body) {
            Ok(s) if s.contains("m=audio") => s,
            _ => return self.error(400, "the body must be an SDP offer with an audio section"),
        };
        let behaviour = match self.defaults.with_query(query.iter().map(|(k, v)| (k, v))) {
            Ok(b) => b,
            Err(e) => return self.error(400, e.to_string()),
        };

        let id = format!("{:016x}", rand::random::<u64>());
        let entry = Arc::new(
            SessionEntry::new(
                id.clone(),
                name.clone(),
                app.clone(),
                behaviour.freq,
                behaviour.freq_r,
            )
            .with_user_agent(user_agent.clone()),
        );
        if self.registry.insert(Arc::clone(&entry)).is_err() {
            if self.srs_errors {
                return Reply::Close;
            }
            return Reply::Respond(
                Response::text(503, "too many sessions")
                    .with_header("Retry-After", RETRY_AFTER_SECS.to_string()),
            );
        }

        let answered = SendSession::answer(&self.api, &self.rtc, offer, self.gather_timeout).await;
        let (rtc, answer) = match answered {
            Ok((rtc, answer)) if answer.to_ascii_lowercase().contains("opus/48000") => {
                (rtc, answer)
            }
            Ok((rtc, _)) => {
                rtc.close().await;
                self.registry.remove(&id);
                return self.error(400, "the offer has no Opus 48 kHz audio");
            }
            Err(e) => {
                self.registry.remove(&id);
                let status = match e.step {
                    "parse offer SDP" | "set remote description" => 400,
                    _ => 500,
                };
                tracing::debug!(error = %e, "cannot answer offer");
                return self.error(status, format!("cannot answer the offer: {e}"));
            }
        };
        // Blocked while the answer was being built (the sweep may already have removed it).
        if let Some(rule) = self.blocked.blocking(user_agent.as_deref()) {
            rtc.close().await;
            self.registry.remove(&id);
            return self.refuse_blocked(&rule);
        }

        let dialect = if self.srs_location {
            Dialect::Srs
        } else {
            dialect
        };
        let location = routes::location(dialect, &name, app.as_deref(), &id);
        tracing::info!(
            %id,
            stream = %name,
            freq = behaviour.freq,
            freq_r = behaviour.freq_r,
            user_agent = user_agent.as_deref().unwrap_or("-"),
            "testsrc session created"
        );

        self.tasks.fetch_add(1, Ordering::SeqCst);
        let guard = TaskGuard(Arc::clone(&self.tasks));
        let task = Session {
            entry,
            registry: Arc::clone(&self.registry),
            hub: self.hub.clone(),
            rtc,
            behaviour,
            connect_timeout: self.connect_timeout,
            answered: Instant::now(),
        };
        tokio::spawn(async move {
            let _guard = guard;
            session::run(task).await;
        });

        Reply::Respond(
            Response::new(201)
                .with_header("Content-Type", "application/sdp")
                .with_header("Location", location)
                .with_header("Access-Control-Allow-Origin", "*")
                .with_header("Access-Control-Expose-Headers", "Location")
                .with_body(answer),
        )
    }

    fn delete(&self, id: &str) -> Reply {
        // Removed at once so the count drops and a repeated DELETE is a 404; the task closes
        // the peer connection right after.
        match self.registry.remove(id) {
            Some(entry) => {
                entry.cancel(Stop::Deleted);
                Reply::Respond(Response::new(200).with_header("Access-Control-Allow-Origin", "*"))
            }
            None => self.error(404, "no such session"),
        }
    }
}

impl Handler for Server {
    async fn handle(&self, req: Request) -> Reply {
        match routes::route(&req.method, &req.target) {
            Route::Health if req.method == "HEAD" => Reply::Respond(Response::new(200)),
            Route::Health => Reply::Respond(Response::text(200, "ok")),
            Route::Stats => match serde_json::to_vec(&self.stats()) {
                Ok(body) => Reply::Respond(
                    Response::new(200)
                        .with_header("Content-Type", "application/json")
                        .with_body(body),
                ),
                Err(e) => self.error(500, e.to_string()),
            },
            Route::Play {
                name,
                app,
                dialect,
                query,
            } => self.play(&req, name, app, dialect, &query).await,
            Route::Delete { id } => self.delete(&id),
            Route::Block { agent } => self.block(&agent),
            Route::Unblock { agent } => self.unblock(agent.as_deref()),
            Route::Options => Reply::Respond(
                Response::new(204)
                    .with_header("Allow", "POST, DELETE, OPTIONS")
                    .with_header("Access-Control-Allow-Origin", "*")
                    .with_header("Access-Control-Allow-Methods", "POST, DELETE, OPTIONS")
                    .with_header(
                        "Access-Control-Allow-Headers",
                        "Content-Type, Authorization",
                    )
                    .with_header("Access-Control-Expose-Headers", "Location"),
            ),
            Route::MethodNotAllowed { allow } => match self.error(405, "method not allowed") {
                Reply::Respond(r) => Reply::Respond(r.with_header("Allow", allow)),
                close => close,
            },
            Route::NotFound => self.error(404, "not found"),
            Route::BadRequest(message) => self.error(400, message),
        }
    }

    fn reject(&self, status: u16, message: &str) -> Reply {
        self.error(status, message)
    }
}
