//! Opus decoder core: reorder buffer + libopus + loss concealment (SPEC §2, DecoderActor).
//!
//! The output is a continuous PCM timeline at the decode rate: no holes and no duplicated
//! media. The core keeps the RTP timestamp (48 kHz clock) at which the next packet is
//! expected; when a packet starts later than that, exactly the missing span is concealed
//! before the packet is decoded — Opus PLC in steps of at most 20 ms, and for the last lost
//! frame the in-band FEC carried by the packet that did arrive. Concealing by timestamp
//! instead of by counting lost packets also fills Opus DTX gaps (the sender stops sending
//! during silence, the sequence stays contiguous, the timestamp jumps).
//!
//! A jump that cannot be concealed sensibly — backwards, or longer than `max_conceal_ms`
//! (SRS resumes a republished stream on the same SSRC with new numbering) — is a
//! discontinuity: counted, not concealed, decoding simply continues from the new packet.
//!
//! Nothing here returns an error for bad media: an undecodable payload is concealed with PLC
//! and counted, so one broken packet never tears the stream down.

use opus::{Channels, Decoder};

use super::packet::RtpPacket;
use super::reorder::{ReorderBuffer, ReorderConfig, ReorderStats, Reordered};

/// RTP clock of Opus (RFC 7587).
const RTP_CLOCK_HZ: u32 = 48_000;
/// Longest Opus packet: 120 ms at 48 kHz.
const MAX_PACKET_48K: u32 = 5_760;
/// PLC is run in steps of at most 20 ms: libopus fades its concealment per call, and
/// 20 ms is the frame size senders use, so the concealment sounds like the real frames.
const PLC_STEP_48K: u32 = 960;
/// Duration assumed for an undecodable packet before any good packet told us the frame size.
const DEFAULT_PACKET_48K: u32 = 960;
/// Rates libopus decodes natively.
const NATIVE_RATES: [u32; 5] = [8_000, 12_000, 16_000, 24_000, 48_000];

/// Settings of the decoder core.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecoderConfig {
    /// Decode rate; must be one libopus supports natively (see [`native_decode_format`]).
    pub rate: u32,
    /// 1 or 2; libopus downmixes/upmixes itself.
    pub channels: u16,
    pub reorder: ReorderConfig,
    /// Longest timestamp gap that is concealed; a longer gap is a discontinuity.
    pub max_conceal_ms: u32,
}

impl Default for DecoderConfig {
    fn default() -> Self {
        Self {
            rate: 16_000,
            channels: 1,
            reorder: ReorderConfig::default(),
            max_conceal_ms: 1_000,
        }
    }
}

/// Why a decoder could not be created (media errors are never reported this way).
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("libopus cannot decode at {rate} Hz with {channels} channel(s) (use 8, 12, 16, 24 or 48 kHz, 1 or 2 channels)")]
    UnsupportedFormat { rate: u32, channels: u16 },
    #[error("creating the Opus decoder failed: {0}")]
    Opus(#[from] opus::Error),
}

/// Counters of the decoder core (cumulative since creation).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DecoderStats {
    /// RTP packets pushed (before reordering).
    pub packets: u64,
    /// Packets that reached the decoder (after reordering, late ones and duplicates removed).
    pub decoded: u64,
    /// Packets declared lost by the reorder buffer.
    pub lost: u64,
    /// Packets dropped because they arrived after their slot was given up.
    pub late: u64,
    /// Packets dropped as duplicates.
    pub duplicates: u64,
    /// Packets that arrived out of order and were put back in place.
    pub reordered: u64,
    /// Times the sequence numbering was adopted anew (big seq jump).
    pub resyncs: u64,
    /// Frames (at the decode rate) produced by concealment: PLC, FEC, and undecodable packets.
    pub concealed_frames: u64,
    /// `concealed_frames` in milliseconds.
    pub concealed_ms: u64,
    /// Part of `concealed_frames` requested from in-band FEC (libopus falls back to PLC by
    /// itself when the packet carries no FEC).
    pub fec_frames: u64,
    /// Timestamp jumps that were not concealed (backwards, or beyond `max_conceal_ms`).
    pub discontinuities: u64,
    /// Payloads that could not be decoded (concealed instead).
    pub decode_errors: u64,
    /// Frames appended to the output in total.
    pub frames_out: u64,
}

/// Picks the libopus decode format for a target output format.
///
/// libopus decodes natively at 8/12/16/24/48 kHz, mono or stereo (it downmixes a stereo
/// stream itself), which is about 40 % cheaper than decoding at 48 kHz stereo and resampling.
/// 22.05 and 44.1 kHz are decoded at the next native rate above (24 and 48 kHz) and left to
/// the resampler. `force_resample` decodes the full source format (48 kHz stereo) so that all
/// conversion happens in the resampler.
pub fn native_decode_format(
    target_rate: u32,
    target_channels: u16,
    force_resample: bool,
) -> (u32, u16) {
    if force_resample {
        return (RTP_CLOCK_HZ, 2);
    }
    let channels = target_channels.clamp(1, 2);
    if NATIVE_RATES.contains(&target_rate) {
        return (target_rate, channels);
    }
    let rate = NATIVE_RATES
        .iter()
        .copied()
        .find(|&r| r >= target_rate)
        .unwrap_or(RTP_CLOCK_HZ);
    (rate, channels)
}

/// Reorders, decodes and conceals one Opus stream. See the module docs.
pub struct DecoderCore {
    reorder: ReorderBuffer,
    decoder: Decoder,
    rate: u32,
    channels: usize,
    /// 48 kHz RTP ticks per output frame (1, 2, 3, 4 or 6).
    ticks_per_frame: u32,
    /// RTP ticks not yet turned into output frames (only non-2.5 ms-aligned gaps leave any).
    tick_remainder: u32,
    max_conceal_ticks: u32,
    /// RTP timestamp where the next packet should start; `None` before the first packet.
    expected_ts: Option<u32>,
    /// Duration of the last good packet, used for packets whose duration cannot be read.
    last_duration: u32,
    /// Reused buffers: decoded PCM of one call, and reorder output.
    pcm: Vec<i16>,
    events: Vec<Reordered>,
    stats: DecoderStats,
}

impl std::fmt::Debug for DecoderCore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DecoderCore")
            .field("rate", &self.rate)
            .field("channels", &self.channels)
            .field("expected_ts", &self.expected_ts)
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

impl DecoderCore {
    pub fn new(cfg: DecoderConfig) -> Result<Self, DecodeError> {
        let channels = match cfg.channels {
            1 => Channels::Mono,
            2 => Channels::Stereo,
            _ => return Err(unsupported(&cfg)),
        };
        if !NATIVE_RATES.contains(&cfg.rate) {
            return Err(unsupported(&cfg));
        }
        let decoder = Decoder::new(cfg.rate, channels)?;
        let ch = usize::from(cfg.channels);
        let ticks_per_frame = RTP_CLOCK_HZ / cfg.rate;
        Ok(Self {
            reorder: ReorderBuffer::new(cfg.reorder),
            decoder,
            rate: cfg.rate,
            channels: ch,
            ticks_per_frame,
            tick_remainder: 0,
            max_conceal_ticks: cfg.max_conceal_ms.saturating_mul(RTP_CLOCK_HZ / 1000),
            expected_ts: None,
            last_duration: DEFAULT_PACKET_48K,
            // One max-size packet at the decode rate; every call fits in it.
            pcm: vec![0; (MAX_PACKET_48K / ticks_per_frame) as usize * ch],
            events: Vec::with_capacity(16),
            stats: DecoderStats::default(),
        })
    }

    /// Decode sample rate in Hz.
    pub fn rate(&self) -> u32 {
        self.rate
    }

    /// Decode channel count (output is interleaved).
    pub fn channels(&self) -> u16 {
        self.channels as u16
    }

    pub fn stats(&self) -> DecoderStats {
        let ReorderStats {
            received,
            reordered,
            late,
            duplicates,
            lost,
            resyncs,
            ..
        } = self.reorder.stats();
        DecoderStats {
            packets: received,
            reordered,
            late,
            duplicates,
            lost,
            resyncs,
            concealed_ms: self.stats.concealed_frames * 1000 / u64::from(self.rate),
            ..self.stats
        }
    }

    /// Accepts one RTP packet; appends the PCM that became ready (interleaved, decode rate)
    /// to `out` and returns the number of frames appended.
    pub fn push(&mut self, pkt: RtpPacket, out: &mut Vec<i16>) -> usize {
        let mut events = std::mem::take(&mut self.events);
        self.reorder.push(pkt, &mut events);
        let frames = self.drain(&mut events, out);
        self.events = events;
        frames
    }

    /// Releases everything the reorder buffer holds (call when media stalls) and decodes it.
    pub fn flush(&mut self, out: &mut Vec<i16>) -> usize {
        let mut events = std::mem::take(&mut self.events);
        self.reorder.flush(&mut events);
        let frames = self.drain(&mut events, out);
        self.events = events;
        frames
    }

    fn drain(&mut self, events: &mut Vec<Reordered>, out: &mut Vec<i16>) -> usize {
        let before = out.len();
        for event in events.drain(..) {
            // Loss is concealed by timestamp when the next packet arrives; the count is
            // already in the reorder stats.
            if let Reordered::Packet(pkt) = event {
                self.on_packet(&pkt, out);
            }
        }
        let frames = (out.len() - before) / self.channels;
        self.stats.frames_out += frames as u64;
        frames
    }

    fn on_packet(&mut self, pkt: &RtpPacket, out: &mut Vec<i16>) {
        self.stats.decoded += 1;
        let payload: &[u8] = &pkt.payload;
        let duration = packet_duration(payload);
        let expected = self.expected_ts.unwrap_or(pkt.timestamp);
        let gap = pkt.timestamp.wrapping_sub(expected) as i32;
        if gap < 0 || gap.unsigned_abs() > self.max_conceal_ticks {
            // A new timeline (republish, or a sender restart): the old decoder state would
            // only smear the previous stream into the new one.
            self.stats.discontinuities += 1;
            self.tick_remainder = 0;
            // Resetting a valid decoder cannot fail; if it did, decoding simply goes on.
            let _ = self.decoder.reset_state();
        } else if gap > 0 {
            let fec_source = duration.and(Some(payload));
            self.conceal(gap.unsigned_abs(), fec_source, out);
        }
        let duration = match duration {
            Some(ticks) => {
                self.decode_packet(payload, ticks, out);
                self.last_duration = ticks;
                ticks
            }
            None => {
                self.stats.decode_errors += 1;
                self.plc(self.last_duration, out);
                self.last_duration
            }
        };
        self.expected_ts = Some(pkt.timestamp.wrapping_add(duration));
    }

    /// Conceals `gap` RTP ticks: PLC for all but the last lost frame, then FEC from the
    /// packet that arrived (when it has a readable duration) for the last lost frame.
    fn conceal(&mut self, gap: u32, fec_source: Option<&[u8]>, out: &mut Vec<i16>) {
        let fec = fec_source.and_then(|payload| {
            let frame = opus::packet::get_samples_per_frame(payload, RTP_CLOCK_HZ).ok()?;
            let frame = u32::try_from(frame).ok()?;
            (frame > 0 && frame <= gap).then_some((payload, frame))
        });
        let plc_ticks = gap - fec.map_or(0, |(_, frame)| frame);
        self.plc(plc_ticks, out);
        if let Some((payload, frame)) = fec {
            let frames = self.frames_for(frame);
            let n = frames * self.channels;
            let before = out.len();
            match self.decoder.decode(payload, &mut self.pcm[..n], true) {
                Ok(got) if got == frames => out.extend_from_slice(&self.pcm[..n]),
                _ => self.plc_frames(frames, out),
            }
            let produced = ((out.len() - before) / self.channels) as u64;
            self.stats.fec_frames += produced;
            self.stats.concealed_frames += produced;
        }
    }

    /// Runs PLC for `ticks` RTP ticks in steps of at most 20 ms.
    fn plc(&mut self, ticks: u32, out: &mut Vec<i16>) {
        let mut left = ticks;
        while left > 0 {
            let step = left.min(PLC_STEP_48K);
            left -= step;
            let frames = self.frames_for(step);
            let before = out.len();
            self.plc_frames(frames, out);
            self.stats.concealed_frames += ((out.len() - before) / self.channels) as u64;
        }
    }

    /// Appends exactly `frames` frames of PLC output. libopus only conceals whole 2.5 ms
    /// blocks, so an odd remainder is concealed as a whole block and cut.
    fn plc_frames(&mut self, frames: usize, out: &mut Vec<i16>) {
        if frames == 0 {
            return;
        }
        let block = self.rate as usize / 400;
        let asked = frames.div_ceil(block) * block;
        let n = frames * self.channels;
        match self
            .decoder
            .decode(&[], &mut self.pcm[..asked * self.channels], false)
        {
            Ok(got) if got >= frames => out.extend_from_slice(&self.pcm[..n]),
            // PLC of a valid decoder does not fail; keep the timeline exact regardless.
            _ => out.resize(out.len() + n, 0),
        }
    }

    /// Decodes one packet of `ticks` duration; an undecodable one is concealed instead.
    fn decode_packet(&mut self, payload: &[u8], ticks: u32, out: &mut Vec<i16>) {
        let frames = self.frames_for(ticks);
        let n = frames * self.channels;
        match self.decoder.decode(payload, &mut self.pcm[..n], false) {
            Ok(got) if got == frames => out.extend_from_slice(&self.pcm[..n]),
            _ => {
                self.stats.decode_errors += 1;
                let before = out.len();
                self.plc_frames(frames, out);
                self.stats.concealed_frames += ((out.len() - before) / self.channels) as u64;
            }
        }
    }

    /// Output frames for `ticks` RTP ticks, carrying sub-frame remainders so the timeline
    /// stays exact even across gaps that are not a whole number of output frames.
    fn frames_for(&mut self, ticks: u32) -> usize {
        let total = ticks + self.tick_remainder;
        self.tick_remainder = total % self.ticks_per_frame;
        (total / self.ticks_per_frame) as usize
    }
}

fn unsupported(cfg: &DecoderConfig) -> DecodeError {
    DecodeError::UnsupportedFormat {
        rate: cfg.rate,
        channels: cfg.channels,
    }
}

/// Duration of an Opus packet in 48 kHz ticks, `None` if the packet is not valid Opus.
fn packet_duration(payload: &[u8]) -> Option<u32> {
    if payload.is_empty() {
        return None;
    }
    let samples = opus::packet::get_nb_samples(payload, RTP_CLOCK_HZ).ok()?;
    let samples = u32::try_from(samples).ok()?;
    (samples > 0 && samples <= MAX_PACKET_48K).then_some(samples)
}

#[cfg(test)]
mod tests {
    use std::f32::consts::TAU;
    use std::time::Instant;

    use bytes::Bytes;
    use opus::{Application, Encoder};

    use super::*;

    const TONE_HZ: f32 = 1_000.0;

    /// `n` packets of a 48 kHz stereo 1 kHz tone, 20 ms each, FEC enabled.
    fn encode_tone(n: usize) -> Vec<Bytes> {
        let mut enc = Encoder::new(48_000, Channels::Stereo, Application::Voip).unwrap();
        enc.set_inband_fec(true).unwrap();
        enc.set_packet_loss_perc(10).unwrap();
        enc.set_bitrate(opus::Bitrate::Bits(32_000)).unwrap();
        let mut phase = 0usize;
        let mut frame = vec![0i16; 960 * 2];
        (0..n)
            .map(|_| {
                for f in frame.chunks_mut(2) {
                    let v = (TAU * TONE_HZ * phase as f32 / 48_000.0).sin() * 10_000.0;
                    f[0] = v as i16;
                    f[1] = v as i16;
                    phase += 1;
                }
                Bytes::from(enc.encode_vec(&frame, 4000).unwrap())
            })
            .collect()
    }

    fn rtp(seq: u16, ts: u32, payload: Bytes) -> RtpPacket {
        RtpPacket {
            seq,
            timestamp: ts,
            payload,
            arrival: Instant::now(),
        }
    }

    fn core(rate: u32, channels: u16) -> DecoderCore {
        DecoderCore::new(DecoderConfig {
            rate,
            channels,
            ..DecoderConfig::default()
        })
        .unwrap()
    }

    /// Goertzel power of `freq` in `x` relative to the total power.
    fn tone_ratio(x: &[i16], rate: f32, freq: f32) -> f32 {
        let w = TAU * freq / rate;
        let coeff = 2.0 * w.cos();
        let (mut s1, mut s2) = (0.0f32, 0.0f32);
        let mut energy = 0.0f32;
        for &v in x {
            let v = f32::from(v);
            let s = v + coeff * s1 - s2;
            s2 = s1;
            s1 = s;
            energy += v * v;
        }
        let power = s1 * s1 + s2 * s2 - coeff * s1 * s2;
        // For a pure tone, power ≈ energy * N / 2.
        power / (energy * x.len() as f32 / 2.0)
    }

    #[test]
    fn native_format_choice() {
        assert_eq!(native_decode_format(16_000, 1, false), (16_000, 1));
        assert_eq!(native_decode_format(8_000, 2, false), (8_000, 2));
        assert_eq!(native_decode_format(48_000, 1, false), (48_000, 1));
        assert_eq!(native_decode_format(22_050, 1, false), (24_000, 1));
        assert_eq!(native_decode_format(44_100, 2, false), (48_000, 2));
        assert_eq!(native_decode_format(16_000, 1, true), (48_000, 2));
    }

    #[test]
    fn rejects_non_native_rate() {
        let err = DecoderCore::new(DecoderConfig {
            rate: 44_100,
            ..DecoderConfig::default()
        })
        .unwrap_err();
        assert!(matches!(
            err,
            DecodeError::UnsupportedFormat { rate: 44_100, .. }
        ));
    }

    #[test]
    fn clean_stream_decodes_tone_at_16k_mono() {
        let frames = encode_tone(50);
        let mut dec = core(16_000, 1);
        let mut out = Vec::new();
        for (i, p) in frames.into_iter().enumerate() {
            let n = dec.push(rtp(i as u16, i as u32 * 960, p), &mut out);
            assert_eq!(n, 320, "packet {i} produced {n} frames");
        }
        assert_eq!(out.len(), 50 * 320);
        // Skip the encoder's start-up; the tone must dominate.
        let ratio = tone_ratio(&out[3_200..], 16_000.0, TONE_HZ);
        assert!(ratio > 0.8, "1 kHz share of power {ratio}");
        let st = dec.stats();
        assert_eq!((st.packets, st.lost, st.concealed_frames), (50, 0, 0));
    }

    #[test]
    fn loss_reorder_duplicates_and_wrap_give_exact_timeline() {
        let frames = encode_tone(100);
        let seq0: u16 = 65_500; // wraps after 36 packets
        let ts0: u32 = 4_294_900_000; // timestamp wraps as well
        let pkt = |i: usize| {
            rtp(
                seq0.wrapping_add(i as u16),
                ts0.wrapping_add(i as u32 * 960),
                frames[i].clone(),
            )
        };
        let dropped = [10usize, 11, 36, 70];
        let mut order: Vec<usize> = (0..100).filter(|i| !dropped.contains(i)).collect();
        // Swap two pairs (within the 60 ms window) and duplicate two packets.
        let a = order.iter().position(|&i| i == 20).unwrap();
        order.swap(a, a + 1);
        let b = order.iter().position(|&i| i == 40).unwrap();
        order.swap(b, b + 2);
        let c = order.iter().position(|&i| i == 50).unwrap();
        order.insert(c + 1, 50);
        order.insert(c + 4, 48);

        let mut dec = core(16_000, 1);
        let mut out = Vec::new();
        for i in order {
            dec.push(pkt(i), &mut out);
        }
        dec.flush(&mut out);
        assert_eq!(
            out.len(),
            100 * 320,
            "timeline must be exactly 100 packets long"
        );
        let st = dec.stats();
        assert_eq!(st.lost, 4);
        assert_eq!(st.duplicates, 2);
        assert_eq!(st.late, 0);
        assert_eq!(st.reordered, 3); // 20 overtaken by 21; 41 and 40 overtaken by 42
        assert_eq!(st.concealed_frames, 4 * 320);
        assert_eq!(st.concealed_ms, 80);
        assert_eq!(st.discontinuities, 0);
        assert_eq!(st.decoded, 96);
        assert_eq!(st.frames_out, 100 * 320);
        // Concealment keeps the tone: the loss is not audible as a hole.
        let ratio = tone_ratio(&out[3_200..], 16_000.0, TONE_HZ);
        assert!(ratio > 0.7, "1 kHz share of power {ratio}");
    }

    #[test]
    fn fec_is_used_for_the_last_lost_frame() {
        let frames = encode_tone(10);
        let mut dec = core(16_000, 1);
        let mut out = Vec::new();
        for i in [0usize, 1, 2, 5, 6, 7, 8, 9] {
            dec.push(rtp(i as u16, i as u32 * 960, frames[i].clone()), &mut out);
        }
        dec.flush(&mut out);
        assert_eq!(out.len(), 10 * 320);
        let st = dec.stats();
        assert_eq!(st.lost, 2);
        assert_eq!(st.concealed_frames, 640);
        assert_eq!(st.fec_frames, 320);
    }

    #[test]
    fn dtx_gap_is_filled_without_loss() {
        let frames = encode_tone(20);
        let mut dec = core(16_000, 1);
        let mut out = Vec::new();
        // Contiguous sequence numbers, but the timestamp skips 5 frames after packet 9.
        for (i, p) in frames.into_iter().enumerate() {
            let ts = i as u32 * 960 + if i >= 10 { 5 * 960 } else { 0 };
            dec.push(rtp(i as u16, ts, p), &mut out);
        }
        assert_eq!(out.len(), 25 * 320);
        let st = dec.stats();
        assert_eq!(
            (st.lost, st.concealed_frames, st.discontinuities),
            (0, 5 * 320, 0)
        );
    }

    #[test]
    fn srs_republish_is_a_discontinuity_not_loss() {
        let frames = encode_tone(40);
        let mut dec = core(16_000, 1);
        let mut out = Vec::new();
        // SRS starts at seq 0, ts 0.
        for (i, p) in frames.iter().enumerate().take(20) {
            dec.push(rtp(i as u16, i as u32 * 960, p.clone()), &mut out);
        }
        // Republish: same SSRC, sequence jumps by 7000, timestamp by 30 s.
        for (i, p) in frames.iter().enumerate().skip(20) {
            let seq = (i + 7_000) as u16;
            let ts = i as u32 * 960 + 30 * 48_000;
            dec.push(rtp(seq, ts, p.clone()), &mut out);
        }
        assert_eq!(out.len(), 40 * 320);
        let st = dec.stats();
        assert_eq!((st.lost, st.concealed_frames), (0, 0));
        assert_eq!((st.discontinuities, st.resyncs), (1, 1));
    }

    #[test]
    fn backwards_timestamp_is_a_discontinuity() {
        let frames = encode_tone(10);
        let mut dec = core(16_000, 1);
        let mut out = Vec::new();
        for (i, p) in frames.iter().enumerate() {
            let ts = if i < 5 {
                96_000 + i as u32 * 960
            } else {
                i as u32 * 960
            };
            dec.push(rtp(i as u16, ts, p.clone()), &mut out);
        }
        assert_eq!(out.len(), 10 * 320);
        assert_eq!(dec.stats().discontinuities, 1);
        assert_eq!(dec.stats().concealed_frames, 0);
    }

    #[test]
    fn bad_payloads_are_concealed_and_counted() {
        let frames = encode_tone(6);
        let mut dec = core(16_000, 1);
        let mut out = Vec::new();
        for (i, p) in frames.iter().enumerate() {
            let payload = match i {
                2 => Bytes::new(),
                // TOC code 3 claiming 63 frames of 20 ms: not a valid packet.
                4 => Bytes::from_static(&[0xff, 0xff, 0xff]),
                _ => p.clone(),
            };
            dec.push(rtp(i as u16, i as u32 * 960, payload), &mut out);
        }
        assert_eq!(out.len(), 6 * 320);
        let st = dec.stats();
        assert_eq!(st.decode_errors, 2);
        assert_eq!(st.concealed_frames, 2 * 320);
        assert_eq!(st.discontinuities, 0);
    }

    #[test]
    fn odd_gap_keeps_exact_length() {
        // A gap that is not a multiple of 2.5 ms (nor of 3 ticks) still yields the exact
        // number of frames over the whole timeline.
        let frames = encode_tone(4);
        let mut dec = core(16_000, 1);
        let mut out = Vec::new();
        let ts = [0u32, 960, 960 * 2 + 100, 960 * 3 + 200];
        for (i, (p, ts)) in frames.iter().zip(ts).enumerate() {
            dec.push(rtp(i as u16, ts, p.clone()), &mut out);
        }
        // 4 packets + 200 ticks of gap = (3840 + 200) / 3 frames, rounded down.
        assert_eq!(out.len(), (4 * 960 + 200) / 3);
    }

    #[test]
    fn native_rates_give_proportional_counts() {
        let frames = encode_tone(10);
        for (rate, ch) in [(8_000, 1), (12_000, 2), (24_000, 1), (48_000, 2)] {
            let mut dec = core(rate, ch);
            let mut out = Vec::new();
            for (i, p) in frames.iter().enumerate() {
                dec.push(rtp(i as u16, i as u32 * 960, p.clone()), &mut out);
            }
            let per_packet = rate as usize / 50;
            assert_eq!(
                out.len(),
                10 * per_packet * usize::from(ch),
                "{rate} Hz x{ch}"
            );
            assert_eq!((dec.rate(), dec.channels()), (rate, ch));
        }
    }
}
