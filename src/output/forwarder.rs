//! WsForwarderActor: one stream's PCM in, envelopes out to the consumer, with nothing lost
//! while the consumer is away (SPEC §4.2, §4.3).
//!
//! Chunking, envelopes and buffering are the plain [`Chunker`], [`EnvelopeEncoder`] and
//! [`ReplayBuffer`]; the socket belongs to a [`WsLinkActor`] — the stream's own
//! (`wsMode: per-stream`) or one the node shares between all streams for that consumer URL
//! (`wsMode: shared`). This actor only moves chunks between the buffer and the link.
//!
//! Every chunk passes through the [`ReplayBuffer`] and stays there until the consumer has
//! confirmed it (see the [`replay`](super::replay) module docs for what "sent" means): the
//! link writes a ping after every batch, and the pong proves the consumer read everything
//! before it ([`LinkEvent::Acked`]). When the connection goes ([`LinkEvent::Down`]), the
//! unconfirmed chunks are rewound; meanwhile audio keeps accumulating in the buffer (bounded,
//! default 30 s; the oldest is dropped and counted beyond). When the link is up again the
//! buffer is written first, in order, as one burst, then the stream continues live. `seq`
//! continues across connections, and with the `binary` envelope every connection starts with
//! a start frame carrying the `seq` of the first chunk that follows.
//!
//! Stopping ([`Drain`]) flushes the last partial chunk and waits, bounded, until the consumer
//! has confirmed everything; then the forwarder detaches (a per-stream link then closes the
//! connection with a close handshake) and reports [`ChainEvent::Drained`].
//!
//! Self-fencing (SPEC §6): while the node cannot prove it still holds the stream's lease it
//! [`Hold`]s delivery — audio keeps accumulating in the buffer exactly as during a consumer
//! outage, but nothing is written. [`Resume`] (the lease renewed or re-acquired, maybe with a
//! new epoch) writes the backlog and continues; a [`Drain`] while held means the lease went to
//! another node: the backlog is discarded, never sent.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use actix::prelude::*;
use tokio::sync::oneshot;

use super::ack_ledger::ClientId;
use super::chunker::{Chunk, Chunker};
use super::envelope::{EnvelopeEncoder, StreamIdentity};
use super::link::{
    next_client_id, redact, Attach, Detach, Hurry, LinkConfig, LinkEvent, Write, WsLinkActor,
    CLOSE_WAIT,
};
use super::replay::ReplayBuffer;
use crate::cluster::fence::DeliveryGate;
use crate::config::{OutputFormat, PipelineSettings, StreamSpec};
use crate::pipeline::messages::{ChainEvent, Drain, Pcm};
use crate::pipeline::stats::StreamStats;

/// Audio held for an absent consumer (SPEC §4.3 default).
pub const DEFAULT_REPLAY_BOUND: Duration = Duration::from_secs(30);

/// Consumer-side settings of one forwarder.
#[derive(Debug, Clone)]
pub struct ForwarderConfig {
    /// The connection (used to start the stream's own link; a shared link has its own).
    pub link: LinkConfig,
    pub format: OutputFormat,
    /// Most audio held while the consumer is away (oldest dropped beyond).
    pub replay_bound: Duration,
    /// How long a stop may wait for the consumer to confirm the last chunks.
    pub drain_timeout: Duration,
    /// Deliver only while this is open (a cluster node's lease deadline); `None`: always.
    pub gate: Option<Arc<DeliveryGate>>,
}

impl ForwarderConfig {
    pub fn for_stream(spec: &StreamSpec, settings: &PipelineSettings) -> Self {
        Self {
            link: LinkConfig::for_stream(spec, settings),
            format: spec.output,
            replay_bound: settings.replay_buffer,
            drain_timeout: settings.timeouts.ws_connect,
            gate: None,
        }
    }
}

/// The consumer is away since `since`; `dropped_before` is the drop count at that moment.
struct Outage {
    since: Instant,
    dropped_before: u64,
}

pub struct WsForwarderActor {
    cfg: ForwarderConfig,
    chunker: Chunker,
    encoder: EnvelopeEncoder,
    buffer: ReplayBuffer,
    client: ClientId,
    /// A shared link given at construction, else the one this actor starts for itself.
    link: Option<Addr<WsLinkActor>>,
    /// The connection our link reported up, if any.
    conn: Option<u64>,
    chunk_buf: Vec<Chunk>,
    stats: Arc<StreamStats>,
    supervisor: Recipient<ChainEvent>,
    outage: Option<Outage>,
    /// The bound dropped audio during the current outage (warned once per outage).
    drop_warned: bool,
    /// Set by [`Drain`]: give up reaching the consumer after this instant.
    drain_deadline: Option<Instant>,
    /// Detach is sent; waiting for the link to let go.
    detaching: bool,
    /// `Drained` or `ForwarderFailed` was reported.
    done: bool,
    /// Delivery is held (self-fencing): buffer, write nothing.
    held: bool,
    /// The gate was found closed at the last check (for logging the change once).
    gate_closed: bool,
    /// The connection the start frame (binary envelope) was written on.
    started_conn: Option<u64>,
}

/// Stop writing to the consumer and keep buffering: this node may no longer own the stream.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Hold;

/// The lease is confirmed (possibly re-acquired with a new `epoch`): write the backlog and
/// continue live.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Resume {
    pub epoch: u64,
}

impl WsForwarderActor {
    /// A forwarder on `shared` link, or on a link of its own when `None`.
    pub fn new(
        cfg: ForwarderConfig,
        identity: StreamIdentity,
        stats: Arc<StreamStats>,
        supervisor: Recipient<ChainEvent>,
        shared: Option<Addr<WsLinkActor>>,
    ) -> Self {
        Self {
            chunker: Chunker::new(&cfg.format),
            encoder: EnvelopeEncoder::new(cfg.format.envelope, identity, &cfg.format),
            buffer: ReplayBuffer::new(cfg.replay_bound, cfg.format.sample_rate),
            client: next_client_id(),
            link: shared,
            cfg,
            conn: None,
            chunk_buf: Vec::new(),
            stats,
            supervisor,
            outage: None,
            drop_warned: false,
            drain_deadline: None,
            detaching: false,
            done: false,
            held: false,
            gate_closed: false,
            started_conn: None,
        }
    }

    fn url(&self) -> &str {
        redact(&self.cfg.link.url)
    }

    /// May this forwarder write now? Not while held, nor past the node's lease deadline.
    fn delivering(&mut self) -> bool {
        if self.held {
            return false;
        }
        let open = self
            .cfg
            .gate
            .as_ref()
            .is_none_or(|g| g.is_open(Instant::now()));
        if open == self.gate_closed {
            self.gate_closed = !open;
            if open {
                tracing::info!(stm_id = %self.stm_id(), "lease confirmed again; delivering");
            } else {
                tracing::warn!(stm_id = %self.stm_id(), "lease deadline passed; holding delivery");
            }
        }
        open
    }

    fn stm_id(&self) -> &str {
        &self.encoder.identity().stm_id
    }

    // ---- link events ----

    fn on_up(&mut self, conn: u64, ctx: &mut Context<Self>) {
        self.conn = Some(conn);
        self.drop_warned = false;
        self.stats.ws_connects.fetch_add(1, Relaxed);
        self.stats.consumer_connected.store(true, Relaxed);
        self.stats.set_consumer_error(None);
        let (replay, replay_ms) = (self.buffer.unsent(), self.buffer.unsent_ms());
        match self.outage.take() {
            Some(o) => tracing::info!(
                stm_id = %self.stm_id(), url = %self.url(),
                outage_ms = o.since.elapsed().as_millis() as u64,
                "consumer back; replaying {replay} chunks ({replay_ms} ms), dropped {}",
                self.buffer.dropped() - o.dropped_before
            ),
            None => tracing::debug!(
                stm_id = %self.stm_id(), url = %self.url(),
                "consumer up; writing {replay} chunks ({replay_ms} ms)"
            ),
        }
        self.send_unsent();
        self.check_drained(ctx);
    }

    fn on_down(&mut self, conn: u64) {
        if self.conn != Some(conn) {
            return;
        }
        self.conn = None;
        self.stats.consumer_connected.store(false, Relaxed);
        let unconfirmed = self.buffer.rewind();
        self.update_buffered();
        self.outage.get_or_insert(Outage {
            since: Instant::now(),
            dropped_before: self.buffer.dropped(),
        });
        tracing::debug!(
            stm_id = %self.stm_id(),
            "consumer down; {} chunks ({} ms) held for replay, {unconfirmed} of them written \
             but unconfirmed",
            self.buffer.len(), self.buffer.held_ms()
        );
        if self.drain_deadline.is_some() {
            self.hurry();
        }
    }

    fn on_acked(&mut self, conn: u64, token: u64, ctx: &mut Context<Self>) {
        if self.conn != Some(conn) {
            return;
        }
        self.buffer.confirm_before(token);
        self.update_buffered();
        self.check_drained(ctx);
    }

    // ---- moving chunks ----

    /// Hands every unsent chunk to the link for the current connection (after the start
    /// frame, on a connection that has not had it yet); the link pings after them and the
    /// pong acks them. Nothing while held.
    fn send_unsent(&mut self) {
        let delivering = self.delivering();
        let (Some(conn), Some(link), true) = (self.conn, &self.link, delivering) else {
            self.update_buffered();
            return;
        };
        let mut frames = Vec::new();
        if self.started_conn != Some(conn) {
            self.started_conn = Some(conn);
            let first_seq = self
                .buffer
                .first_unsent_seq()
                .unwrap_or_else(|| self.chunker.next_seq());
            frames.extend(self.encoder.start_frame(first_seq));
        }
        let now = unix_now();
        while let Some(out) = self.buffer.next_unsent() {
            frames.push(self.encoder.encode(&out.chunk, now));
            if out.first_time {
                self.stats.chunks.fetch_add(1, Relaxed);
                self.stats
                    .bytes
                    .fetch_add(out.chunk.pcm.len() as u64, Relaxed);
                if let Some(arrival) = out.chunk.oldest_arrival {
                    self.stats
                        .record_latency(arrival.elapsed().as_micros() as u64);
                }
            }
        }
        if !frames.is_empty() {
            link.do_send(Write {
                client: self.client,
                conn,
                frames,
                token: self.buffer.ack_token(),
            });
        }
        self.update_buffered();
    }

    fn push_chunk(&mut self, chunk: Chunk) {
        let evicted = self.buffer.push(chunk);
        if evicted.dropped > 0 {
            self.stats
                .dropped_chunks
                .fetch_add(evicted.dropped, Relaxed);
            if !self.drop_warned {
                self.drop_warned = true;
                tracing::warn!(
                    stm_id = %self.stm_id(), url = %self.url(), bound = ?self.cfg.replay_bound,
                    "consumer away longer than the replay bound; dropping the oldest audio"
                );
            }
        }
    }

    fn update_buffered(&self) {
        self.stats.buffered_ms.store(self.buffer.held_ms(), Relaxed);
    }

    fn hurry(&self) {
        if let Some(link) = &self.link {
            link.do_send(Hurry);
        }
    }

    // ---- ending ----

    fn fail(&mut self, error: String, ctx: &mut Context<Self>) {
        if self.done {
            return;
        }
        self.done = true;
        self.link = None;
        self.stats.consumer_connected.store(false, Relaxed);
        self.supervisor
            .do_send(ChainEvent::ForwarderFailed { error });
        ctx.stop();
    }

    /// Stopping and the consumer has confirmed everything (or nothing was owed): leave.
    fn check_drained(&mut self, ctx: &mut Context<Self>) {
        if self.drain_deadline.is_some() && self.buffer.is_empty() {
            self.detach(ctx);
        }
    }

    /// Stopping and the consumer cannot be reached: report what is lost and leave.
    fn give_up_drain(&mut self, reason: &str, ctx: &mut Context<Self>) {
        let (chunks, ms) = self.buffer.abandon();
        tracing::warn!(
            stm_id = %self.stm_id(), url = %self.url(), error = %reason,
            dropped_total = self.buffer.dropped(),
            "stopping without reaching the consumer; {chunks} chunks ({ms} ms) not delivered"
        );
        self.update_buffered();
        self.detach(ctx);
    }

    /// Writes the stop frame (binary envelope), leaves the link and reports `Drained` once
    /// the link has let go (for a per-stream link: after the close handshake, bounded).
    fn detach(&mut self, ctx: &mut Context<Self>) {
        if self.detaching || self.done {
            return;
        }
        self.detaching = true;
        let Some(link) = self.link.take() else {
            self.drained(ctx);
            return;
        };
        let stop = self
            .delivering()
            .then(|| self.encoder.stop_frame("stopped"))
            .flatten();
        if let (Some(conn), Some(stop)) = (self.conn, stop) {
            link.do_send(Write {
                client: self.client,
                conn,
                frames: vec![stop],
                token: None,
            });
        }
        let (done, released) = oneshot::channel();
        link.do_send(Detach {
            client: self.client,
            done,
        });
        async move {
            let _ = tokio::time::timeout(CLOSE_WAIT + Duration::from_millis(500), released).await;
        }
        .into_actor(self)
        .map(|_, act, ctx| act.drained(ctx))
        .spawn(ctx);
    }

    fn drained(&mut self, ctx: &mut Context<Self>) {
        if self.done {
            return;
        }
        self.done = true;
        self.update_buffered();
        self.stats.consumer_connected.store(false, Relaxed);
        self.supervisor.do_send(ChainEvent::Drained);
        ctx.stop();
    }
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or_default()
}

impl Actor for WsForwarderActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        let link = self
            .link
            .get_or_insert_with(|| WsLinkActor::per_stream(self.cfg.link.clone()).start());
        link.do_send(Attach {
            client: self.client,
            events: ctx.address().recipient(),
        });
    }

    /// Stopped without detaching (e.g. the arbiter went): do not stay on a shared link.
    fn stopped(&mut self, _: &mut Self::Context) {
        if let Some(link) = self.link.take() {
            let (done, _) = oneshot::channel();
            link.do_send(Detach {
                client: self.client,
                done,
            });
        }
    }
}

impl Handler<LinkEvent> for WsForwarderActor {
    type Result = ();

    fn handle(&mut self, event: LinkEvent, ctx: &mut Self::Context) {
        if self.done || self.detaching {
            return;
        }
        match event {
            LinkEvent::Up { conn } => self.on_up(conn, ctx),
            LinkEvent::Down { conn } => self.on_down(conn),
            LinkEvent::Acked { conn, token } => self.on_acked(conn, token, ctx),
            LinkEvent::Retrying { error } => self.stats.set_consumer_error(Some(error)),
            LinkEvent::Failed { error } => self.fail(error, ctx),
        }
    }
}

impl Handler<Pcm> for WsForwarderActor {
    type Result = ();

    fn handle(&mut self, msg: Pcm, _: &mut Self::Context) {
        if self.drain_deadline.is_some() || self.done {
            // Upstream flushed before sending Drain; nothing may follow the stop frame.
            return;
        }
        let mut chunks = std::mem::take(&mut self.chunk_buf);
        self.chunker.push(&msg.samples, msg.arrival, &mut chunks);
        for chunk in chunks.drain(..) {
            self.push_chunk(chunk);
        }
        self.chunk_buf = chunks;
        self.send_unsent();
    }
}

impl Handler<Drain> for WsForwarderActor {
    type Result = ();

    fn handle(&mut self, _: Drain, ctx: &mut Self::Context) {
        if self.drain_deadline.is_some() || self.done {
            return;
        }
        let limit = self.cfg.drain_timeout;
        self.drain_deadline = Some(Instant::now() + limit);
        if !self.delivering() {
            // Stopped while fenced: the lease may be someone else's now; what we hold is
            // theirs to deliver.
            self.give_up_drain("lease not confirmed while stopping", ctx);
            return;
        }
        if let Some(last) = self.chunker.flush_partial() {
            self.push_chunk(last);
        }
        if self.conn.is_some() {
            self.send_unsent();
            self.check_drained(ctx);
        } else {
            // Skip the backoff: the stop is bounded, try now.
            self.hurry();
        }
        ctx.run_later(limit, move |act, ctx| {
            if !act.done && !act.detaching {
                act.give_up_drain(&format!("consumer not confirmed within {limit:?}"), ctx);
            }
        });
    }
}

impl Handler<Hold> for WsForwarderActor {
    type Result = ();

    fn handle(&mut self, _: Hold, _: &mut Self::Context) {
        if !self.held {
            self.held = true;
            tracing::warn!(stm_id = %self.stm_id(), "delivery held: lease not confirmed");
        }
    }
}

impl Handler<Resume> for WsForwarderActor {
    type Result = ();

    fn handle(&mut self, Resume { epoch }: Resume, ctx: &mut Self::Context) {
        if self.done || self.detaching {
            return;
        }
        if epoch != self.encoder.identity().epoch {
            tracing::info!(stm_id = %self.stm_id(), epoch, "delivering under a new epoch");
            self.encoder.set_epoch(epoch);
        }
        if std::mem::take(&mut self.held) {
            tracing::info!(
                stm_id = %self.stm_id(), backlog_ms = self.buffer.unsent_ms(),
                "delivery resumed: lease confirmed"
            );
            self.send_unsent();
            self.check_drained(ctx);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_takes_the_node_settings() {
        let spec = StreamSpec {
            stm_id: "s1".into(),
            trace_id: "t1".into(),
            whep_url: "http://h/whep".into(),
            whep_token: None,
            ws_url: "ws://c/{stmId}".into(),
            ws_headers: vec![("A".into(), "b".into())],
            ice_servers: vec![],
            output: OutputFormat::default(),
            force_resample: false,
        };
        let settings = PipelineSettings {
            max_consecutive_failures: Some(3),
            backoff_base: Duration::from_millis(100),
            ..PipelineSettings::default()
        };
        let cfg = ForwarderConfig::for_stream(&spec, &settings);
        assert_eq!(cfg.link.url, "ws://c/s1");
        // The stream's headers, plus the node's User-Agent (it names the node).
        assert_eq!(
            cfg.link.headers,
            vec![
                ("A".to_owned(), "b".to_owned()),
                (
                    "User-Agent".to_owned(),
                    crate::config::user_agent(&settings.node)
                ),
            ]
        );
        assert!(cfg.link.headers[1]
            .1
            .contains(&format!("(node {})", settings.node)));
        assert_eq!(cfg.link.max_consecutive_failures, Some(3));
        assert_eq!(cfg.link.backoff_base, Duration::from_millis(100));
        assert_eq!(cfg.link.backoff_max, settings.backoff_max);
        assert_eq!(cfg.link.connect_timeout, settings.timeouts.ws_connect);
        assert_eq!(cfg.link.ping_interval, settings.ws_ping);
        assert_eq!(cfg.drain_timeout, settings.timeouts.ws_connect);
        assert_eq!(cfg.replay_bound, DEFAULT_REPLAY_BOUND);
    }

    // ---- the actor against real sockets on 127.0.0.1 ----

    use futures_util::StreamExt;
    use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver, UnboundedSender};

    use crate::config::EnvelopeKind;

    /// Stands in for the supervisor: forwards every ChainEvent to the test.
    struct Collect(UnboundedSender<ChainEvent>);

    impl Actor for Collect {
        type Context = Context<Self>;
    }

    impl Handler<ChainEvent> for Collect {
        type Result = ();
        fn handle(&mut self, e: ChainEvent, _: &mut Self::Context) {
            let _ = self.0.send(e);
        }
    }

    const CHUNK: usize = 3_200; // 200 ms at 16 kHz mono

    fn test_cfg(url: String, budget: Option<u32>) -> ForwarderConfig {
        ForwarderConfig {
            link: LinkConfig {
                url,
                headers: vec![],
                connect_timeout: Duration::from_millis(500),
                ping_interval: Duration::from_millis(100),
                backoff_base: Duration::from_millis(20),
                backoff_max: Duration::from_millis(100),
                max_consecutive_failures: budget,
            },
            format: OutputFormat {
                envelope: EnvelopeKind::Extended,
                ..OutputFormat::default()
            },
            replay_bound: DEFAULT_REPLAY_BOUND,
            drain_timeout: Duration::from_millis(500),
            gate: None,
        }
    }

    /// A loopback port with nobody listening.
    fn dead_port() -> u16 {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    }

    fn start(
        cfg: ForwarderConfig,
    ) -> (
        Addr<WsForwarderActor>,
        Arc<StreamStats>,
        UnboundedReceiver<ChainEvent>,
    ) {
        let (tx, rx) = unbounded_channel();
        let stats = Arc::new(StreamStats::default());
        let fwd = WsForwarderActor::new(
            cfg,
            StreamIdentity::default(),
            stats.clone(),
            Collect(tx).start().recipient(),
            None,
        )
        .start();
        (fwd, stats, rx)
    }

    async fn next_event(rx: &mut UnboundedReceiver<ChainEvent>, within: Duration) -> ChainEvent {
        tokio::time::timeout(within, rx.recv())
            .await
            .expect("no ChainEvent in time")
            .expect("collector gone")
    }

    /// `seq` of the next extended chunk the test server received.
    async fn next_seq(rx: &mut UnboundedReceiver<String>) -> u64 {
        let t = tokio::time::timeout(Duration::from_secs(5), rx.recv())
            .await
            .expect("no chunk in time")
            .expect("server gone");
        let v: serde_json::Value = serde_json::from_str(&t).unwrap();
        v["seq"].as_u64().unwrap()
    }

    #[test]
    fn failure_budget_ends_the_stream_with_the_connect_error() {
        let url = format!("ws://127.0.0.1:{}/x", dead_port());
        actix::System::new().block_on(async move {
            let (_fwd, _stats, mut rx) = start(test_cfg(url, Some(3)));
            match next_event(&mut rx, Duration::from_secs(5)).await {
                ChainEvent::ForwarderFailed { error } => assert!(
                    error.contains("WebSocket connect") && error.contains("3 consecutive"),
                    "{error}"
                ),
                other => panic!("unexpected {other:?}"),
            }
        });
    }

    #[test]
    fn drain_without_a_consumer_gives_up_after_the_connect_timeout() {
        let url = format!("ws://127.0.0.1:{}/x", dead_port());
        actix::System::new().block_on(async move {
            let (fwd, stats, mut rx) = start(test_cfg(url, None));
            fwd.do_send(Pcm {
                samples: vec![0; CHUNK * 5 + 100],
                arrival: None,
            });
            tokio::time::sleep(Duration::from_millis(50)).await;
            assert_eq!(stats.buffered_ms.load(Relaxed), 1_000, "5 chunks held");
            let asked = Instant::now();
            fwd.do_send(Drain);
            let ev = next_event(&mut rx, Duration::from_secs(3)).await;
            assert!(matches!(ev, ChainEvent::Drained), "{ev:?}");
            let took = asked.elapsed();
            assert!(
                took >= Duration::from_millis(450) && took < Duration::from_secs(2),
                "{took:?}"
            );
            // Nothing was dropped by the bound; what was held is given up (and logged).
            assert_eq!(stats.dropped_chunks.load(Relaxed), 0);
            assert_eq!(stats.buffered_ms.load(Relaxed), 0);
            assert_eq!(stats.chunks.load(Relaxed), 0);
        });
    }

    #[test]
    fn silent_consumer_is_replaced_and_gets_the_unconfirmed_chunks_again() {
        use tokio_tungstenite::tungstenite::Message as TMessage;

        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let url = format!("ws://{}/x", listener.local_addr().unwrap());
        let (text_tx, mut text_rx) = unbounded_channel::<String>();
        let server = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let l = tokio::net::TcpListener::from_std(listener).unwrap();
                // First consumer: handshake, then never reads again (so never pongs).
                let (s1, _) = l.accept().await.unwrap();
                let _mute = tokio_tungstenite::accept_async(s1).await.unwrap();
                // Second consumer: reads everything (tungstenite answers pings itself).
                let (s2, _) = l.accept().await.unwrap();
                let mut ws = tokio_tungstenite::accept_async(s2).await.unwrap();
                while let Some(Ok(m)) = ws.next().await {
                    if let TMessage::Text(t) = m {
                        let _ = text_tx.send(t.as_str().to_owned());
                    }
                }
            });
        });

        actix::System::new().block_on(async move {
            let (fwd, stats, mut rx) = start(test_cfg(url, None));
            let pcm = || Pcm {
                samples: vec![7; CHUNK * 3],
                arrival: None,
            };
            fwd.do_send(pcm());
            let mut seqs = Vec::new();
            // Written to the mute consumer, never confirmed: replayed on the second one.
            for _ in 0..3 {
                seqs.push(next_seq(&mut text_rx).await);
            }
            fwd.do_send(pcm());
            for _ in 0..3 {
                seqs.push(next_seq(&mut text_rx).await);
            }
            assert_eq!(seqs, vec![0, 1, 2, 3, 4, 5]);
            assert_eq!(stats.ws_connects.load(Relaxed), 2);
            // Counted once each, although 0..3 were written twice.
            assert_eq!(stats.chunks.load(Relaxed), 6);
            fwd.do_send(Drain);
            let ev = next_event(&mut rx, Duration::from_secs(3)).await;
            assert!(matches!(ev, ChainEvent::Drained), "{ev:?}");
        });
        server.join().unwrap();
    }

    /// A consumer on 127.0.0.1 that forwards every text message it reads to the test.
    fn reading_consumer() -> (String, UnboundedReceiver<String>) {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let url = format!("ws://{}/x", listener.local_addr().unwrap());
        let (tx, rx) = unbounded_channel::<String>();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let l = tokio::net::TcpListener::from_std(listener).unwrap();
                let (s, _) = l.accept().await.unwrap();
                let mut ws = tokio_tungstenite::accept_async(s).await.unwrap();
                while let Some(Ok(m)) = ws.next().await {
                    if let tokio_tungstenite::tungstenite::Message::Text(t) = m {
                        let _ = tx.send(t.as_str().to_owned());
                    }
                }
            });
        });
        (url, rx)
    }

    #[test]
    fn held_delivery_buffers_then_resumes_under_the_new_epoch_or_is_discarded() {
        let (url, mut text_rx) = reading_consumer();
        actix::System::new().block_on(async move {
            let (fwd, stats, mut rx) = start(test_cfg(url, None));
            let pcm = |n: usize| Pcm {
                samples: vec![3; CHUNK * n],
                arrival: None,
            };
            fwd.do_send(pcm(2));
            assert_eq!(next_seq(&mut text_rx).await, 0);
            assert_eq!(next_seq(&mut text_rx).await, 1);

            // Fenced: audio accumulates, nothing reaches the consumer.
            fwd.do_send(Hold);
            fwd.do_send(pcm(3));
            let quiet = tokio::time::timeout(Duration::from_millis(400), text_rx.recv()).await;
            assert!(quiet.is_err(), "sent while held: {quiet:?}");
            assert_eq!(stats.buffered_ms.load(Relaxed), 600, "3 chunks held");

            // Lease re-acquired with epoch 5: the backlog goes out in order, then live.
            fwd.do_send(Resume { epoch: 5 });
            for want in 2..5 {
                let t = tokio::time::timeout(Duration::from_secs(5), text_rx.recv())
                    .await
                    .expect("backlog in time")
                    .expect("server gone");
                let v: serde_json::Value = serde_json::from_str(&t).unwrap();
                assert_eq!(v["seq"], want);
                assert_eq!(v["epoch"], 5);
            }

            // Held again and then stopped: the lease went elsewhere, so the backlog is
            // discarded, not flushed.
            fwd.do_send(Hold);
            fwd.do_send(pcm(2));
            fwd.do_send(Drain);
            let ev = next_event(&mut rx, Duration::from_secs(3)).await;
            assert!(matches!(ev, ChainEvent::Drained), "{ev:?}");
            let after = tokio::time::timeout(Duration::from_millis(300), text_rx.recv()).await;
            assert!(
                !matches!(after, Ok(Some(_))),
                "sent after losing the lease: {after:?}"
            );
            assert_eq!(stats.chunks.load(Relaxed), 5, "seq 5 and 6 never went out");
        });
    }

    #[test]
    fn past_the_lease_deadline_nothing_is_written_until_it_moves_and_a_stop_discards() {
        let (url, mut text_rx) = reading_consumer();
        actix::System::new().block_on(async move {
            let gate = Arc::new(DeliveryGate::closed());
            gate.open_until(Instant::now() + Duration::from_secs(60));
            let mut cfg = test_cfg(url, None);
            cfg.gate = Some(gate.clone());
            let (fwd, stats, mut rx) = start(cfg);
            let pcm = |n: usize| Pcm {
                samples: vec![5; CHUNK * n],
                arrival: None,
            };
            fwd.do_send(pcm(1));
            assert_eq!(next_seq(&mut text_rx).await, 0);

            // The registry could not renew: the deadline passes; the forwarder holds by itself.
            gate.open_until(Instant::now());
            fwd.do_send(pcm(2));
            let quiet = tokio::time::timeout(Duration::from_millis(300), text_rx.recv()).await;
            assert!(quiet.is_err(), "sent past the deadline: {quiet:?}");

            // Renewed: the next audio flushes the backlog first, in order.
            gate.open_until(Instant::now() + Duration::from_secs(60));
            fwd.do_send(pcm(1));
            for want in 1..4 {
                assert_eq!(next_seq(&mut text_rx).await, want);
            }

            // Past the deadline again, then stopped: discarded, not flushed.
            gate.open_until(Instant::now());
            fwd.do_send(pcm(2));
            fwd.do_send(Drain);
            let ev = next_event(&mut rx, Duration::from_secs(3)).await;
            assert!(matches!(ev, ChainEvent::Drained), "{ev:?}");
            let after = tokio::time::timeout(Duration::from_millis(300), text_rx.recv()).await;
            assert!(
                !matches!(after, Ok(Some(_))),
                "sent after the deadline: {after:?}"
            );
            assert_eq!(stats.chunks.load(Relaxed), 4);
        });
    }
}
