//! The sending side of a WHEP session on webrtc-rs: answers a recvonly audio offer with a
//! sendonly Opus track and writes ready-made RTP packets (sequence number and timestamp chosen
//! by the caller, so a test source can shape them freely).
//!
//! Callbacks registered on the peer connection capture only channels, never the connection:
//! webrtc-rs 0.17 keeps handler closures alive longer than the connection, and an `Arc` to the
//! connection inside one would leak the whole session.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::watch;
use webrtc::api::API;
use webrtc::peer_connection::sdp::session_description::RTCSessionDescription;
use webrtc::peer_connection::RTCPeerConnection;
use webrtc::rtp::header::Header;
use webrtc::rtp::packet::Packet;
use webrtc::rtp_transceiver::rtp_sender::RTCRtpSender;
use webrtc::rtp_transceiver::rtp_transceiver_direction::RTCRtpTransceiverDirection;
use webrtc::rtp_transceiver::RTCRtpTransceiverInit;
use webrtc::track::track_local::track_local_static_rtp::TrackLocalStaticRTP;
use webrtc::track::track_local::TrackLocalWriter;

use super::engine::{
    opus_capability, peer_configuration, set_local_and_gather, RtcContext, RtcError,
};
pub use super::receiver::TransportState;
use crate::config::RtcConfig;

/// What [`SendSession::negotiate`] hands back besides the connection itself.
struct Negotiated {
    track: Arc<TrackLocalStaticRTP>,
    state_tx: watch::Sender<TransportState>,
    state: watch::Receiver<TransportState>,
    sdp: String,
}

/// One sendonly audio peer connection, created from a remote offer.
pub struct SendSession {
    pc: Arc<RTCPeerConnection>,
    track: Arc<TrackLocalStaticRTP>,
    state_tx: watch::Sender<TransportState>,
    state: watch::Receiver<TransportState>,
}

impl SendSession {
    /// Answers `offer_sdp` (an audio offer, normally `recvonly`) with one sendonly Opus track
    /// and waits for ICE gathering (at most `gather_timeout`; what was gathered by then is
    /// answered, since WHEP clients such as ours do not trickle).
    ///
    /// The Opus payload type of the answer is the one the offer uses (webrtc-rs negotiates the
    /// remote payload type). The SSRC is chosen by webrtc-rs once per session and stays fixed,
    /// like SRS keeps it across a republish. `cfg` supplies the ICE servers; the transport
    /// settings (IPs, ports, loopback) are those `api` was built with (`build_api(cfg)`).
    /// Returns the session and the complete answer SDP.
    pub async fn answer(
        api: &API,
        cfg: &RtcConfig,
        offer_sdp: &str,
        gather_timeout: Duration,
    ) -> Result<(Self, String), RtcError> {
        let offer = RTCSessionDescription::offer(offer_sdp.to_owned()).step("parse offer SDP")?;
        let pc = Arc::new(
            api.new_peer_connection(peer_configuration(&cfg.ice_servers))
                .await
                .step("create peer connection")?,
        );
        match Self::negotiate(&pc, offer, gather_timeout).await {
            Ok(n) => Ok((
                Self {
                    pc,
                    track: n.track,
                    state_tx: n.state_tx,
                    state: n.state,
                },
                n.sdp,
            )),
            Err(e) => {
                // A half-built connection still owns sockets and tasks: release them.
                if let Err(close) = pc.close().await {
                    tracing::debug!(error = %close, "closing failed peer connection");
                }
                Err(e)
            }
        }
    }

    async fn negotiate(
        pc: &Arc<RTCPeerConnection>,
        offer: RTCSessionDescription,
        gather_timeout: Duration,
    ) -> Result<Negotiated, RtcError> {
        let (state_tx, state_rx) = watch::channel(TransportState::Connecting);
        let cb_tx = state_tx.clone();
        pc.on_peer_connection_state_change(Box::new(move |s| {
            cb_tx.send_replace(TransportState::from(s));
            Box::pin(async {})
        }));

        let track = Arc::new(TrackLocalStaticRTP::new(
            opus_capability(),
            "audio".to_owned(),
            "whep-bridge-testsrc".to_owned(),
        ));
        // Added before the remote description so webrtc-rs pairs the offer's recvonly audio
        // section with this sendonly transceiver instead of creating an empty one.
        let transceiver = pc
            .add_transceiver_from_track(
                Arc::clone(&track) as _,
                Some(RTCRtpTransceiverInit {
                    direction: RTCRtpTransceiverDirection::Sendonly,
                    send_encodings: vec![],
                }),
            )
            .await
            .step("add audio track")?;
        spawn_rtcp_drain(transceiver.sender().await, state_rx.clone());

        pc.set_remote_description(offer)
            .await
            .step("set remote description")?;
        let answer = pc.create_answer(None).await.step("create answer")?;
        let sdp = set_local_and_gather(pc, answer, gather_timeout).await?;
        Ok(Negotiated {
            track,
            state_tx,
            state: state_rx,
            sdp,
        })
    }

    /// Sends one Opus payload as an RTP packet with the given sequence number and timestamp.
    ///
    /// Before ICE/DTLS are up the packet is silently discarded by webrtc-rs (no binding yet),
    /// so callers wait for [`TransportState::Connected`] if the first packet matters.
    pub async fn write_packet(
        &self,
        seq: u16,
        timestamp: u32,
        payload: Bytes,
    ) -> Result<(), RtcError> {
        let pkt = Packet {
            header: Header {
                version: 2,
                sequence_number: seq,
                timestamp,
                // SSRC and payload type are filled in per binding by the track.
                ..Default::default()
            },
            payload,
        };
        self.track
            .write_rtp(&pkt)
            .await
            .step("write RTP")
            .map(|_| ())
    }

    /// Watches the transport state (connected, failed, closed, ...).
    pub fn state(&self) -> watch::Receiver<TransportState> {
        self.state.clone()
    }

    /// Closes the connection abruptly (DTLS close, no RTCP BYE is sent by webrtc-rs for a
    /// sender without interceptors) and marks the state closed.
    pub async fn close(&self) {
        if let Err(e) = self.pc.close().await {
            tracing::debug!(error = %e, "closing peer connection");
        }
        self.state_tx.send_replace(TransportState::Closed);
    }
}

/// Reads (and discards) the RTCP the remote sends us, so webrtc-rs never buffers it up.
///
/// The sender's own stop notification can be missed by a reader that is between two reads,
/// so the task also ends when the session state turns closed or failed.
fn spawn_rtcp_drain(sender: Arc<RTCRtpSender>, mut state: watch::Receiver<TransportState>) {
    tokio::spawn(async move {
        loop {
            tokio::select! {
                r = sender.read_rtcp() => {
                    if r.is_err() {
                        break;
                    }
                }
                r = state.wait_for(|s| matches!(s, TransportState::Closed | TransportState::Failed)) => {
                    let _ = r;
                    break;
                }
            }
        }
    });
}
