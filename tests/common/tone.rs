//! Reference signals: exact sine tones, and the same tones after a real Opus round trip.
//!
//! The analysis helpers are tuned on [`opus_roundtrip_16k_mono`]: 48 kHz stereo tones,
//! encoded by libopus in 20 ms frames and decoded straight to 16 kHz mono — the very path the
//! product takes — so their thresholds are known to tolerate real coding noise.

/// Interleaved stereo s16: left `freq_l`, right `freq_r`, `frames` frames, peak `amp` (0..1).
///
/// Phases come from the absolute sample index, so consecutive calls with `start` advanced by
/// `frames` produce one continuous signal.
pub fn stereo_tones(
    freq_l: f64,
    freq_r: f64,
    rate: u32,
    start: u64,
    frames: usize,
    amp: f64,
) -> Vec<i16> {
    let peak = amp.clamp(0.0, 1.0) * 32767.0;
    let (wl, wr) = (
        std::f64::consts::TAU * freq_l / f64::from(rate),
        std::f64::consts::TAU * freq_r / f64::from(rate),
    );
    let mut out = Vec::with_capacity(frames * 2);
    for i in 0..frames as u64 {
        let n = (start + i) as f64;
        out.push((peak * (wl * n).sin()).round() as i16);
        out.push((peak * (wr * n).sin()).round() as i16);
    }
    out
}

/// Mono sum of sines (each with peak `amp`), `samples` long.
pub fn mono_tones(freqs: &[f64], rate: u32, samples: usize, amp: f64) -> Vec<i16> {
    let peak = amp * 32767.0;
    (0..samples)
        .map(|n| {
            let t = n as f64 / f64::from(rate);
            let v: f64 = freqs
                .iter()
                .map(|f| (std::f64::consts::TAU * f * t).sin())
                .sum();
            (peak * v).round().clamp(-32768.0, 32767.0) as i16
        })
        .collect()
}

/// Opus packets (20 ms, 48 kHz stereo, libopus defaults for `Application::Audio`) of the
/// interleaved stereo 48 kHz input; a trailing partial frame is dropped.
pub fn opus_encode_stereo_48k(stereo: &[i16]) -> Vec<Vec<u8>> {
    opus_encode_stereo_48k_at(stereo, None, opus::Application::Audio)
}

/// [`opus_encode_stereo_48k`] at a fixed `bitrate` (bit/s; `None` = libopus default) and
/// `app` — e.g. 96 kbit/s `Voip`, which is what aiortc sends.
pub fn opus_encode_stereo_48k_at(
    stereo: &[i16],
    bitrate: Option<i32>,
    app: opus::Application,
) -> Vec<Vec<u8>> {
    let mut enc = opus::Encoder::new(48_000, opus::Channels::Stereo, app).expect("opus encoder");
    if let Some(b) = bitrate {
        enc.set_bitrate(opus::Bitrate::Bits(b))
            .expect("opus bitrate");
    }
    let mut buf = vec![0u8; 4000];
    stereo
        .chunks_exact(960 * 2)
        .map(|frame| {
            let n = enc.encode(frame, &mut buf).expect("opus encode");
            buf[..n].to_vec()
        })
        .collect()
}

/// Decode packets with a fresh decoder at `rate` and `channels` (1 or 2), concatenated.
pub fn opus_decode(packets: &[Vec<u8>], rate: u32, channels: usize) -> Vec<i16> {
    let ch = if channels == 2 {
        opus::Channels::Stereo
    } else {
        opus::Channels::Mono
    };
    let mut dec = opus::Decoder::new(rate, ch).expect("opus decoder");
    let mut out = Vec::new();
    let mut buf = vec![0i16; 5760 * 2];
    for p in packets {
        let n = dec.decode(p, &mut buf, false).expect("opus decode");
        out.extend_from_slice(&buf[..n * channels]);
    }
    out
}

/// `seconds` of a 48 kHz stereo `freq_l`/`freq_r` tone (peak `amp`) through Opus, decoded to
/// 16 kHz mono: exactly what whep-bridge emits for such a source.
pub fn opus_roundtrip_16k_mono(freq_l: f64, freq_r: f64, seconds: f64, amp: f64) -> Vec<i16> {
    let frames = (seconds * 50.0).round() as usize * 960;
    let stereo = stereo_tones(freq_l, freq_r, 48_000, 0, frames, amp);
    opus_decode(&opus_encode_stereo_48k(&stereo), 16_000, 1)
}
