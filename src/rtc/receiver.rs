//! The receiving side of a WHEP session on webrtc-rs: a recvonly Opus peer connection whose
//! RTP is handed to a plain callback as [`RtpPacket`]s.
//!
//! Callbacks registered on the peer connection capture only the caller's sinks (actor
//! addresses) and channels, never the connection itself: webrtc-rs 0.17 keeps handler
//! closures alive longer than the connection, and an `Arc` to the connection inside one
//! would leak the whole session on every reconnect.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;
use webrtc::api::API;
use webrtc::peer_connection::peer_connection_state::RTCPeerConnectionState;
use webrtc::peer_connection::sdp::session_description::RTCSessionDescription;
use webrtc::peer_connection::RTCPeerConnection;
use webrtc::rtp_transceiver::rtp_codec::RTPCodecType;
use webrtc::rtp_transceiver::rtp_transceiver_direction::RTCRtpTransceiverDirection;
use webrtc::rtp_transceiver::RTCRtpTransceiverInit;

use super::engine::{peer_configuration, set_local_and_gather, RtcContext, RtcError};
use crate::config::IceServer;
use crate::pipeline::packet::RtpPacket;

/// Transport state as the rest of the crate needs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransportState {
    /// Offer made, waiting for ICE/DTLS.
    Connecting,
    /// ICE and DTLS are up.
    Connected,
    /// ICE lost connectivity (may recover; SRS never reports this for a vanished publisher).
    Disconnected,
    /// ICE failed or DTLS closed: the session is gone.
    Failed,
    /// Closed locally or by the remote.
    Closed,
}

impl From<RTCPeerConnectionState> for TransportState {
    fn from(s: RTCPeerConnectionState) -> Self {
        match s {
            RTCPeerConnectionState::Connected => Self::Connected,
            RTCPeerConnectionState::Disconnected => Self::Disconnected,
            RTCPeerConnectionState::Failed => Self::Failed,
            RTCPeerConnectionState::Closed => Self::Closed,
            _ => Self::Connecting,
        }
    }
}

/// Where received packets go. Called on a webrtc-rs task: it must not block.
pub type PacketSink = Box<dyn FnMut(RtpPacket) + Send + 'static>;

/// One recvonly audio peer connection.
pub struct ReceiveSession {
    pc: Arc<RTCPeerConnection>,
    state: watch::Receiver<TransportState>,
}

impl ReceiveSession {
    /// Creates the peer connection, makes the audio-only recvonly offer and waits for ICE
    /// gathering (at most `gather_timeout`; what was gathered by then is offered, since WHEP
    /// servers such as SRS do not accept trickled candidates).
    ///
    /// Returns the session and the complete offer SDP.
    pub async fn offer(
        api: &API,
        ice_servers: &[IceServer],
        gather_timeout: Duration,
        sink: PacketSink,
    ) -> Result<(Self, String), RtcError> {
        let pc = Arc::new(
            api.new_peer_connection(peer_configuration(ice_servers))
                .await
                .step("create peer connection")?,
        );
        let (state_tx, state_rx) = watch::channel(TransportState::Connecting);
        pc.on_peer_connection_state_change(Box::new(move |s| {
            state_tx.send_replace(TransportState::from(s));
            Box::pin(async {})
        }));

        // The track callback fires once per remote track; only the first audio track is
        // read. The sink moves into the reader task, so nothing here holds `pc`.
        let sink = Arc::new(std::sync::Mutex::new(Some(sink)));
        pc.on_track(Box::new(move |track, _receiver, _transceiver| {
            let taken = sink.lock().ok().and_then(|mut s| s.take());
            if let Some(mut sink) = taken {
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 1500];
                    while let Ok((pkt, _)) = track.read(&mut buf).await {
                        sink(RtpPacket {
                            seq: pkt.header.sequence_number,
                            timestamp: pkt.header.timestamp,
                            payload: pkt.payload,
                            arrival: Instant::now(),
                        });
                    }
                    tracing::debug!("remote audio track ended");
                });
            }
            Box::pin(async {})
        }));

        pc.add_transceiver_from_kind(
            RTPCodecType::Audio,
            Some(RTCRtpTransceiverInit {
                direction: RTCRtpTransceiverDirection::Recvonly,
                send_encodings: vec![],
            }),
        )
        .await
        .step("add audio transceiver")?;

        let offer = pc.create_offer(None).await.step("create offer")?;
        let sdp = set_local_and_gather(&pc, offer, gather_timeout).await?;
        Ok((
            Self {
                pc,
                state: state_rx,
            },
            sdp,
        ))
    }

    /// Applies the WHEP answer; ICE and DTLS start from here.
    pub async fn apply_answer(&self, sdp: String) -> Result<(), RtcError> {
        let answer = RTCSessionDescription::answer(sdp).step("parse answer SDP")?;
        self.pc
            .set_remote_description(answer)
            .await
            .step("set remote description")
    }

    /// Watches the transport state (connected, failed, closed, ...).
    pub fn state(&self) -> watch::Receiver<TransportState> {
        self.state.clone()
    }

    /// Closes the connection; the reader task ends when the track closes.
    pub async fn close(&self) {
        if let Err(e) = self.pc.close().await {
            tracing::debug!(error = %e, "closing peer connection");
        }
    }
}
