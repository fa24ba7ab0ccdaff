//! WhepPeerActor: one WHEP session. Offers, posts the offer, applies the answer, waits for
//! ICE/DTLS (bounded), then hands RTP straight to the DecoderActor from the webrtc-rs reader
//! task. It reports connection and failure to the supervisor and, on [`Teardown`], sends the
//! WHEP `DELETE` and closes the connection.
//!
//! One actor instance is one session: the supervisor starts a fresh actor to reconnect,
//! so no state of a failed session can leak into the next one.

use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use tracing::Instrument;
use url::Url;

use super::decoder_actor::DecoderActor;
use super::messages::{ChainEvent, RtpIn, Teardown};
use crate::config::{PipelineSettings, StreamSpec};
use crate::rtc::engine::build_api;
use crate::rtc::receiver::{ReceiveSession, TransportState};
use crate::rtc::RtcError;
use crate::whep::signal::{self, SignalConfig};
use crate::whep::url::endpoint_url;
use crate::whep::WhepError;

/// Why a session could not be set up or ended.
#[derive(Debug, thiserror::Error)]
enum PeerError {
    #[error(transparent)]
    Whep(#[from] WhepError),
    #[error("WebRTC: {0}")]
    Rtc(#[from] RtcError),
    #[error("ICE/DTLS did not connect within {0:?}")]
    ConnectTimeout(Duration),
    #[error("transport {0:?} before it connected")]
    Transport(TransportState),
}

impl PeerError {
    fn retryable(&self) -> bool {
        match self {
            Self::Whep(e) => e.is_retryable(),
            _ => true,
        }
    }
}

pub struct WhepPeerActor {
    session: u64,
    spec: Arc<StreamSpec>,
    settings: Arc<PipelineSettings>,
    decoder: Addr<DecoderActor>,
    supervisor: Recipient<ChainEvent>,
    rtc: Option<Arc<ReceiveSession>>,
    resource: Option<Url>,
    client: awc::Client,
    signal: SignalConfig,
    torn_down: bool,
}

impl WhepPeerActor {
    pub fn new(
        session: u64,
        spec: Arc<StreamSpec>,
        settings: Arc<PipelineSettings>,
        decoder: Addr<DecoderActor>,
        supervisor: Recipient<ChainEvent>,
    ) -> Self {
        let signal = SignalConfig {
            bearer_token: spec.whep_token.clone(),
            timeout: settings.timeouts.http,
            user_agent: Some(crate::config::user_agent(&settings.node)),
            ..SignalConfig::default()
        };
        Self {
            session,
            spec,
            settings,
            decoder,
            supervisor,
            rtc: None,
            resource: None,
            client: signal::http_client(),
            signal,
            torn_down: false,
        }
    }

    fn report_failure(&self, error: &PeerError) {
        self.supervisor.do_send(ChainEvent::PeerFailed {
            session: self.session,
            error: error.to_string(),
            retryable: error.retryable(),
        });
    }

    /// Runs until the transport leaves the connected state, then reports it.
    fn watch_transport(&self, ctx: &mut Context<Self>, session: &ReceiveSession) {
        let mut state = session.state();
        async move {
            loop {
                let now = *state.borrow_and_update();
                if matches!(
                    now,
                    TransportState::Disconnected | TransportState::Failed | TransportState::Closed
                ) {
                    return now;
                }
                if state.changed().await.is_err() {
                    return TransportState::Closed;
                }
            }
        }
        .into_actor(self)
        .map(|state, act, ctx| {
            if !act.torn_down {
                act.supervisor.do_send(ChainEvent::PeerFailed {
                    session: act.session,
                    error: format!("WebRTC transport {state:?} (ICE failure or DTLS close)"),
                    retryable: true,
                });
                ctx.stop();
            }
        })
        .spawn(ctx);
    }
}

/// Offer → POST → answer → connected. Returns the live session and the WHEP resource URL.
async fn establish(
    spec: Arc<StreamSpec>,
    settings: Arc<PipelineSettings>,
    client: awc::Client,
    signal_cfg: SignalConfig,
    decoder: Addr<DecoderActor>,
) -> Result<(Arc<ReceiveSession>, Option<Url>), PeerError> {
    let endpoint = endpoint_url(&spec.whep_url)?;
    let api = build_api(&settings.rtc)?;
    let sink = Box::new(move |pkt| decoder.do_send(RtpIn(pkt)));
    let (session, offer) = ReceiveSession::offer(
        &api,
        &spec.ice_servers,
        settings.timeouts.ice_gathering,
        sink,
    )
    .await?;
    let session = Arc::new(session);
    let answer = match signal::post_offer(&client, &endpoint, &offer, &signal_cfg).await {
        Ok(a) => a,
        Err(e) => {
            session.close().await;
            return Err(e.into());
        }
    };
    tracing::debug!(
        ice_lite = answer.info.ice_lite,
        candidates = answer.info.candidates,
        "WHEP answer received"
    );
    let result = async {
        session.apply_answer(answer.sdp).await?;
        let mut state = session.state();
        let wait = settings.timeouts.connect;
        let connected = tokio::time::timeout(wait, async {
            loop {
                match *state.borrow_and_update() {
                    TransportState::Connected => return Ok(()),
                    s @ (TransportState::Failed | TransportState::Closed) => {
                        return Err(PeerError::Transport(s))
                    }
                    _ => {}
                }
                if state.changed().await.is_err() {
                    return Err(PeerError::Transport(TransportState::Closed));
                }
            }
        })
        .await;
        match connected {
            Ok(r) => r,
            Err(_) => Err(PeerError::ConnectTimeout(wait)),
        }
    }
    .await;
    match result {
        Ok(()) => Ok((session, answer.resource)),
        Err(e) => {
            session.close().await;
            if let Some(resource) = &answer.resource {
                let _ = signal::delete_resource(&client, resource, &signal_cfg).await;
            }
            Err(e)
        }
    }
}

impl Actor for WhepPeerActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        let span =
            tracing::info_span!("whep_connect", stm_id = %self.spec.stm_id, session = self.session);
        establish(
            self.spec.clone(),
            self.settings.clone(),
            self.client.clone(),
            self.signal.clone(),
            self.decoder.clone(),
        )
        .instrument(span)
        .into_actor(self)
        .map(|res, act, ctx| match res {
            Ok((session, resource)) => {
                if act.torn_down {
                    // Stopped while connecting: undo what was just set up.
                    let client = act.client.clone();
                    let cfg = act.signal.clone();
                    actix::spawn(async move {
                        session.close().await;
                        if let Some(r) = resource {
                            let _ = signal::delete_resource(&client, &r, &cfg).await;
                        }
                    });
                    return;
                }
                act.watch_transport(ctx, &session);
                act.rtc = Some(session);
                act.resource = resource;
                act.supervisor.do_send(ChainEvent::PeerConnected {
                    session: act.session,
                });
            }
            Err(e) => {
                if !act.torn_down {
                    act.report_failure(&e);
                }
                ctx.stop();
            }
        })
        .spawn(ctx);
    }

    fn stopped(&mut self, _: &mut Self::Context) {
        // Dropped without a Teardown (supervisor gone): still release the remote session.
        if let Some(session) = self.rtc.take() {
            let resource = self.resource.take();
            let client = self.client.clone();
            let cfg = self.signal.clone();
            actix::spawn(async move {
                session.close().await;
                if let Some(r) = resource {
                    let _ = signal::delete_resource(&client, &r, &cfg).await;
                }
            });
        }
    }
}

impl Handler<Teardown> for WhepPeerActor {
    type Result = ResponseActFuture<Self, ()>;

    fn handle(&mut self, _: Teardown, _: &mut Self::Context) -> Self::Result {
        self.torn_down = true;
        let session = self.rtc.take();
        let resource = self.resource.take();
        let client = self.client.clone();
        let cfg = self.signal.clone();
        Box::pin(
            async move {
                if let Some(r) = resource {
                    if let Err(e) = signal::delete_resource(&client, &r, &cfg).await {
                        tracing::warn!(error = %e, "WHEP DELETE failed");
                    }
                }
                if let Some(s) = session {
                    s.close().await;
                }
            }
            .into_actor(self)
            .map(|_, _, ctx| ctx.stop()),
        )
    }
}
