//! Stereo test tones and their Opus encoding.
//!
//! Left and right carry different frequencies so a receiver can tell the channels apart
//! (and see a mono downmix contain both). The amplitude is moderate (0.3 of full scale per
//! channel) so the mean of the two channels never clips.
//!
//! In-band FEC is enabled on every encoder, but libopus only emits FEC data in its SILK and
//! hybrid modes, which it picks when told to expect loss. Measured with libopus at 64 kbit/s:
//! expected loss 0 gives CELT with tones clean to -60 dB and exact zero-crossing frequencies;
//! expected loss 10 % gives SILK wideband carrying FEC, but the tones come out about 3 % off
//! in zero-crossing frequency with -19 dB crosstalk between channels. Hence the expected loss
//! (`fec`) is a per-stream option defaulting to 0: clean tones unless a test asks for FEC.

use bytes::Bytes;

/// Opus input rate.
pub const SAMPLE_RATE: u32 = 48_000;
/// Samples per channel in one 20 ms frame.
pub const FRAME_SAMPLES: usize = 960;
/// Peak amplitude of each tone, as a fraction of full scale.
pub const AMPLITUDE: f64 = 0.3;
/// Encoder bitrate: ample for two tones, typical of WebRTC stereo music.
const BITRATE: i32 = 64_000;
/// Largest Opus packet we accept from the encoder (RFC 6716 limit is 1275 bytes per frame).
const MAX_PACKET: usize = 1_500;

/// A phase-continuous stereo sine generator producing interleaved s16 frames.
#[derive(Debug, Clone)]
pub struct ToneGenerator {
    phase: [f64; 2],
    step: [f64; 2],
}

impl ToneGenerator {
    /// Left channel at `freq_l` Hz, right at `freq_r` Hz.
    pub fn new(freq_l: f64, freq_r: f64) -> Self {
        let rate = f64::from(SAMPLE_RATE);
        Self {
            phase: [0.0; 2],
            step: [freq_l / rate, freq_r / rate],
        }
    }

    /// Fills `out` (interleaved L/R) with the next `out.len() / 2` sample pairs.
    pub fn fill(&mut self, out: &mut [i16]) {
        let peak = AMPLITUDE * f64::from(i16::MAX);
        for pair in out.chunks_exact_mut(2) {
            for (ch, sample) in pair.iter_mut().enumerate() {
                *sample = (peak * (std::f64::consts::TAU * self.phase[ch]).sin()).round() as i16;
                // Phase kept in [0, 1) so precision does not decay over hours.
                self.phase[ch] = (self.phase[ch] + self.step[ch]).fract();
            }
        }
    }
}

/// A tone generator feeding an Opus encoder: one call = one 20 ms Opus packet.
pub struct ToneEncoder {
    tone: ToneGenerator,
    encoder: opus::Encoder,
    pcm: Vec<i16>,
    packet: Vec<u8>,
}

impl ToneEncoder {
    /// A 48 kHz stereo encoder with in-band FEC enabled, for tones `freq_l`/`freq_r`.
    /// `fec_pct` is the packet loss the encoder plans for: above 0 it carries FEC data.
    pub fn new(freq_l: f64, freq_r: f64, fec_pct: u8) -> Result<Self, opus::Error> {
        let mut encoder = opus::Encoder::new(
            SAMPLE_RATE,
            opus::Channels::Stereo,
            opus::Application::Audio,
        )?;
        encoder.set_bitrate(opus::Bitrate::Bits(BITRATE))?;
        encoder.set_inband_fec(true)?;
        encoder.set_packet_loss_perc(i32::from(fec_pct.min(100)))?;
        Ok(Self {
            tone: ToneGenerator::new(freq_l, freq_r),
            encoder,
            pcm: vec![0; FRAME_SAMPLES * 2],
            packet: vec![0; MAX_PACKET],
        })
    }

    /// Generates and encodes the next 20 ms.
    pub fn next_packet(&mut self) -> Result<Bytes, opus::Error> {
        self.tone.fill(&mut self.pcm);
        let n = self.encoder.encode(&self.pcm, &mut self.packet)?;
        Ok(Bytes::copy_from_slice(&self.packet[..n]))
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Estimates the frequency of a mono signal from its zero crossings.
    pub(crate) fn zero_crossing_freq(samples: &[f32], rate: f64) -> f64 {
        let crossings = samples
            .windows(2)
            .filter(|w| (w[0] < 0.0) != (w[1] < 0.0))
            .count();
        crossings as f64 / 2.0 / (samples.len() as f64 / rate)
    }

    /// Relative power of `freq` in `samples` (Goertzel), normalised by the signal power.
    pub(crate) fn tone_share(samples: &[f32], freq: f64, rate: f64) -> f64 {
        let w = std::f64::consts::TAU * freq / rate;
        let coeff = 2.0 * w.cos();
        let (mut s1, mut s2) = (0.0f64, 0.0f64);
        for &x in samples {
            let s0 = f64::from(x) + coeff * s1 - s2;
            s2 = s1;
            s1 = s0;
        }
        let power = s1 * s1 + s2 * s2 - coeff * s1 * s2;
        let energy: f64 = samples.iter().map(|&x| f64::from(x) * f64::from(x)).sum();
        // A pure sine of energy E gives a Goertzel power of E * N / 2.
        power / (energy * samples.len() as f64 / 2.0)
    }

    fn channel(interleaved: &[i16], ch: usize) -> Vec<f32> {
        interleaved
            .iter()
            .skip(ch)
            .step_by(2)
            .map(|&s| f32::from(s))
            .collect()
    }

    #[test]
    fn generator_produces_the_asked_frequencies_and_amplitude() {
        let mut g = ToneGenerator::new(440.0, 660.0);
        let mut pcm = vec![0i16; 48_000 * 2];
        g.fill(&mut pcm);
        let (l, r) = (channel(&pcm, 0), channel(&pcm, 1));
        assert!((zero_crossing_freq(&l, 48_000.0) - 440.0).abs() < 1.5);
        assert!((zero_crossing_freq(&r, 48_000.0) - 660.0).abs() < 1.5);
        let peak = pcm.iter().map(|s| s.unsigned_abs()).max().unwrap();
        let expected = (AMPLITUDE * f64::from(i16::MAX)) as u16;
        assert!(peak.abs_diff(expected) <= 2, "peak {peak}");
    }

    #[test]
    fn generator_is_continuous_across_frames() {
        let mut whole = vec![0i16; 960 * 2 * 3];
        ToneGenerator::new(437.0, 1013.0).fill(&mut whole);
        let mut g = ToneGenerator::new(437.0, 1013.0);
        let mut pieces = Vec::new();
        for _ in 0..3 {
            let mut f = vec![0i16; 960 * 2];
            g.fill(&mut f);
            pieces.extend_from_slice(&f);
        }
        assert_eq!(whole, pieces);
    }

    #[test]
    fn encoder_output_decodes_to_stereo_tones() {
        let mut enc = ToneEncoder::new(437.0, 1013.0, 0).unwrap();
        let mut dec = opus::Decoder::new(48_000, opus::Channels::Stereo).unwrap();
        let mut pcm = Vec::new();
        let mut frame = vec![0i16; 960 * 2];
        for _ in 0..50 {
            let pkt = enc.next_packet().unwrap();
            assert!(!pkt.is_empty() && pkt.len() < 400);
            assert_eq!(opus::packet::get_nb_samples(&pkt, 48_000).unwrap(), 960);
            assert_eq!(
                opus::packet::get_nb_channels(&pkt).unwrap(),
                opus::Channels::Stereo
            );
            let n = dec.decode(&pkt, &mut frame, false).unwrap();
            assert_eq!(n, 960);
            pcm.extend_from_slice(&frame);
        }
        // Skip the first 100 ms (encoder/decoder warm-up).
        let tail = &pcm[9_600..];
        let (l, r) = (channel(tail, 0), channel(tail, 1));
        assert!((zero_crossing_freq(&l, 48_000.0) - 437.0).abs() < 1.5);
        assert!((zero_crossing_freq(&r, 48_000.0) - 1013.0).abs() < 1.5);
        // Channels stay apart: each carries its own tone, the other's is below -40 dB.
        assert!(tone_share(&l, 437.0, 48_000.0) > 0.99);
        assert!(tone_share(&r, 1013.0, 48_000.0) > 0.99);
        assert!(tone_share(&l, 1013.0, 48_000.0) < 1e-4);
        assert!(tone_share(&r, 437.0, 48_000.0) < 1e-4);
    }

    /// With an expected loss the packets carry in-band FEC: decoding packet k+1 in FEC mode
    /// yields something other than plain concealment of packet k.
    #[test]
    fn expected_loss_turns_on_in_band_fec() {
        let mut enc = ToneEncoder::new(437.0, 1013.0, 10).unwrap();
        let pkts: Vec<Bytes> = (0..60).map(|_| enc.next_packet().unwrap()).collect();
        // TOC configs 0..=15 are SILK and hybrid, the modes that can carry FEC.
        assert!(pkts[20..].iter().all(|p| p[0] >> 3 < 16));
        let differing = (20..58)
            .filter(|&k| {
                let decode_lost = |fec: bool| {
                    let mut d = opus::Decoder::new(48_000, opus::Channels::Stereo).unwrap();
                    let mut f = vec![0i16; 960 * 2];
                    for p in &pkts[..k] {
                        d.decode(p, &mut f, false).unwrap();
                    }
                    let next: &[u8] = if fec { &pkts[k + 1] } else { &[] };
                    d.decode(next, &mut f, fec).unwrap();
                    f
                };
                decode_lost(true) != decode_lost(false)
            })
            .count();
        assert!(differing > 10, "FEC changed only {differing} of 38 frames");
    }
}
