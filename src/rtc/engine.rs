//! Builds the webrtc-rs `API` object tuned for receive-only (or send-only) Opus audio.
//!
//! Measured on webrtc-rs 0.17 (DEVELOPERS.md): an empty interceptor registry (no NACK/RTCP
//! reports: SRS sends no RTCP to players anyway), SRTP `AES128_CM_HMAC_SHA1_80` and UDP over
//! IPv4 only together cut CPU by about a quarter. mDNS is off: candidates use plain IPs.

use std::net::IpAddr;

use webrtc::api::media_engine::{MediaEngine, MIME_TYPE_OPUS};
use webrtc::api::setting_engine::SettingEngine;
use webrtc::api::{APIBuilder, API};
use webrtc::dtls::extension::extension_use_srtp::SrtpProtectionProfile;
use webrtc::dtls_transport::dtls_role::DTLSRole;
use webrtc::ice::mdns::MulticastDnsMode;
use webrtc::ice::network_type::NetworkType;
use webrtc::ice::udp_network::{EphemeralUDP, UDPNetwork};
use webrtc::interceptor::registry::Registry;
use webrtc::peer_connection::configuration::RTCConfiguration;
use webrtc::rtp_transceiver::rtp_codec::{
    RTCRtpCodecCapability, RTCRtpCodecParameters, RTPCodecType,
};

use crate::config::{IceServer, RtcConfig};

/// Opus payload type we offer (the value browsers and SRS use).
pub const OPUS_PAYLOAD_TYPE: u8 = 111;

/// A failure inside the WebRTC stack, with the step that failed.
#[derive(Debug, thiserror::Error)]
#[error("{step}: {source}")]
pub struct RtcError {
    pub step: &'static str,
    #[source]
    pub source: webrtc::Error,
}

pub(crate) trait RtcContext<T> {
    fn step(self, step: &'static str) -> Result<T, RtcError>;
}

impl<T> RtcContext<T> for Result<T, webrtc::Error> {
    fn step(self, step: &'static str) -> Result<T, RtcError> {
        self.map_err(|source| RtcError { step, source })
    }
}

/// The Opus codec as negotiated with SRS and browsers: 48 kHz, 2 channels, in-band FEC.
pub fn opus_capability() -> RTCRtpCodecCapability {
    RTCRtpCodecCapability {
        mime_type: MIME_TYPE_OPUS.to_owned(),
        clock_rate: 48_000,
        channels: 2,
        sdp_fmtp_line: "minptime=10;useinbandfec=1;stereo=1;sprop-stereo=1".to_owned(),
        rtcp_feedback: vec![],
    }
}

/// Builds an `API` with only Opus registered and the transport settings from `cfg`.
pub fn build_api(cfg: &RtcConfig) -> Result<API, RtcError> {
    let mut media = MediaEngine::default();
    media
        .register_codec(
            RTCRtpCodecParameters {
                capability: opus_capability(),
                payload_type: OPUS_PAYLOAD_TYPE,
                ..Default::default()
            },
            RTPCodecType::Audio,
        )
        .step("register Opus")?;

    let mut settings = SettingEngine::default();
    settings.set_ice_multicast_dns_mode(MulticastDnsMode::Disabled);
    settings.set_include_loopback_candidate(cfg.include_loopback);
    let mut networks = vec![NetworkType::Udp4];
    if cfg.ipv6 {
        networks.push(NetworkType::Udp6);
    }
    settings.set_network_types(networks);
    settings.set_srtp_protection_profiles(vec![
        SrtpProtectionProfile::Srtp_Aes128_Cm_Hmac_Sha1_80,
        SrtpProtectionProfile::Srtp_Aead_Aes_128_Gcm,
    ]);
    if !cfg.allowed_ips.is_empty() {
        let allowed: Vec<IpAddr> = cfg.allowed_ips.clone();
        settings.set_ip_filter(Box::new(move |ip| allowed.contains(&ip)));
    }
    if cfg.srs_like_answer {
        settings.set_lite(true);
        settings
            .set_answering_dtls_role(DTLSRole::Server)
            .step("answer as DTLS server")?;
    }
    if let Some((min, max)) = cfg.udp_port_range {
        let udp = EphemeralUDP::new(min, max).map_err(|e| RtcError {
            step: "UDP port range",
            source: webrtc::Error::Ice(e),
        })?;
        settings.set_udp_network(UDPNetwork::Ephemeral(udp));
    }

    Ok(APIBuilder::new()
        .with_media_engine(media)
        .with_interceptor_registry(Registry::new())
        .with_setting_engine(settings)
        .build())
}

/// The peer-connection configuration (ICE servers) for one session.
pub fn peer_configuration(ice_servers: &[IceServer]) -> RTCConfiguration {
    RTCConfiguration {
        ice_servers: ice_servers
            .iter()
            .map(|s| webrtc::ice_transport::ice_server::RTCIceServer {
                urls: s.urls.clone(),
                username: s.username.clone().unwrap_or_default(),
                credential: s.credential.clone().unwrap_or_default(),
            })
            .collect(),
        ..Default::default()
    }
}

/// Sets the local description and waits (at most `gather_timeout`) for ICE gathering, then
/// returns the complete SDP. WHEP servers such as SRS take no trickled candidates, so the
/// description must carry them all; on timeout what was gathered so far is used.
pub(crate) async fn set_local_and_gather(
    pc: &webrtc::peer_connection::RTCPeerConnection,
    desc: webrtc::peer_connection::sdp::session_description::RTCSessionDescription,
    gather_timeout: std::time::Duration,
) -> Result<String, RtcError> {
    let mut gathered = pc.gathering_complete_promise().await;
    pc.set_local_description(desc)
        .await
        .step("set local description")?;
    if tokio::time::timeout(gather_timeout, gathered.recv())
        .await
        .is_err()
    {
        tracing::warn!(
            ?gather_timeout,
            "ICE gathering did not complete in time; using the candidates gathered so far"
        );
    }
    match pc.local_description().await {
        Some(d) => Ok(d.sdp),
        None => Err(RtcError {
            step: "read local description",
            source: webrtc::Error::ErrNoRemoteDescription,
        }),
    }
}
