//! Rate and channel conversion core (SPEC §2, ResamplerActor).
//!
//! The decoder already produces the target format whenever libopus can (8/12/16/24/48 kHz),
//! so this core is usually a pass-through. It converts when it must: 22.05/44.1 kHz targets,
//! forced resampling, or a non-Opus source.
//!
//! Order of work: channels first (stereo→mono as the mean of the two, mono→stereo by
//! duplication), because downmixing before resampling halves the FFT work; then rubato's
//! synchronous `Fft` resampler with fixed 20 ms blocks (`in_rate/50` frames in,
//! `out_rate/50` out). Every supported rate is a multiple of 50 Hz, so 20 ms is always a
//! whole number of frames on both sides and the output length is exact: `k` full input
//! blocks give exactly `k` output blocks. Partial input is buffered until a block is full.
//!
//! The output is *not* trimmed by the resampler delay ([`ResamplerCore::delay_frames`], half
//! an FFT block, 10 ms here): trimming would make output counts differ from input counts, while
//! a constant delay only shifts the audio, which no consumer of a live stream can tell apart
//! from network latency.

use rubato::audioadapter_buffers::direct::InterleavedSlice;
use rubato::{Fft, FixedSync, Resampler};

/// Rates the converter accepts on either side.
pub const RESAMPLER_RATES: [u32; 7] = [8_000, 12_000, 16_000, 22_050, 24_000, 44_100, 48_000];

/// i16 full scale, for the f32 conversion rubato works in.
const FULL_SCALE: f32 = 32_768.0;

/// Why a converter could not be built.
#[derive(Debug, thiserror::Error)]
pub enum ResampleError {
    #[error("unsupported sample rate {0} Hz (use one of {RESAMPLER_RATES:?})")]
    UnsupportedRate(u32),
    #[error("unsupported channel count {0} (use 1 or 2)")]
    UnsupportedChannels(u16),
    #[error("creating the resampler failed: {0}")]
    Construction(#[from] rubato::ResamplerConstructionError),
}

/// The FFT stage with its reused buffers.
struct FftStage {
    fft: Fft<f32>,
    /// Input frames per block (20 ms at the input rate).
    block_in: usize,
    /// Output frames per block (20 ms at the output rate).
    block_out: usize,
    /// Channel-converted input not yet resampled, interleaved, full scale ±1.0.
    pending: Vec<f32>,
    /// Output of one block.
    block: Vec<f32>,
}

/// Converts interleaved s16 PCM between rates and channel counts. See the module docs.
pub struct ResamplerCore {
    in_rate: u32,
    in_channels: usize,
    out_rate: u32,
    out_channels: usize,
    /// `None` when the rates are equal (channel conversion only, or a plain copy).
    stage: Option<FftStage>,
    /// Blocks rubato refused (cannot happen with buffers sized here); replaced by silence.
    errors: u64,
}

impl std::fmt::Debug for ResamplerCore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResamplerCore")
            .field("in", &(self.in_rate, self.in_channels))
            .field("out", &(self.out_rate, self.out_channels))
            .field("resampling", &self.stage.is_some())
            .finish()
    }
}

impl ResamplerCore {
    pub fn new(
        in_rate: u32,
        in_channels: u16,
        out_rate: u32,
        out_channels: u16,
    ) -> Result<Self, ResampleError> {
        for rate in [in_rate, out_rate] {
            if !RESAMPLER_RATES.contains(&rate) {
                return Err(ResampleError::UnsupportedRate(rate));
            }
        }
        for ch in [in_channels, out_channels] {
            if !(1..=2).contains(&ch) {
                return Err(ResampleError::UnsupportedChannels(ch));
            }
        }
        let out_ch = usize::from(out_channels);
        let stage = if in_rate == out_rate {
            None
        } else {
            let block_in = in_rate as usize / 50;
            let block_out = out_rate as usize / 50;
            let fft = Fft::<f32>::new(
                in_rate as usize,
                out_rate as usize,
                block_in,
                out_ch,
                FixedSync::Both,
            )?;
            // FixedSync::Both picks the block size from the rates; 20 ms always divides.
            debug_assert_eq!(fft.input_frames_next(), block_in);
            debug_assert_eq!(fft.output_frames_next(), block_out);
            Some(FftStage {
                block_in: fft.input_frames_next(),
                block_out: fft.output_frames_next(),
                fft,
                pending: Vec::with_capacity(2 * block_in * out_ch),
                block: vec![0.0; block_out * out_ch],
            })
        };
        Ok(Self {
            in_rate,
            in_channels: usize::from(in_channels),
            out_rate,
            out_channels: out_ch,
            stage,
            errors: 0,
        })
    }

    /// True when input is copied unchanged.
    pub fn is_passthrough(&self) -> bool {
        self.stage.is_none() && self.in_channels == self.out_channels
    }

    pub fn in_rate(&self) -> u32 {
        self.in_rate
    }

    pub fn out_rate(&self) -> u32 {
        self.out_rate
    }

    pub fn out_channels(&self) -> u16 {
        self.out_channels as u16
    }

    /// Delay added by the resampler, in output frames (0 without rate conversion).
    pub fn delay_frames(&self) -> usize {
        self.stage.as_ref().map_or(0, |s| s.fft.output_delay())
    }

    /// Input frames buffered, waiting for a full 20 ms block.
    pub fn pending_frames(&self) -> usize {
        self.stage
            .as_ref()
            .map_or(0, |s| s.pending.len() / self.out_channels)
    }

    /// Blocks that failed inside rubato and were replaced by silence (expected to stay 0).
    pub fn errors(&self) -> u64 {
        self.errors
    }

    /// Converts interleaved `input` and appends the result (interleaved) to `out`.
    /// A trailing partial frame in `input` is ignored.
    pub fn process(&mut self, input: &[i16], out: &mut Vec<i16>) {
        let frames = input.len() / self.in_channels;
        let input = &input[..frames * self.in_channels];
        let Some(stage) = self.stage.as_mut() else {
            convert_channels(input, self.in_channels, self.out_channels, out);
            return;
        };
        let in_ch = self.in_channels;
        let out_ch = self.out_channels;
        // Channel conversion straight into the f32 staging buffer.
        match (in_ch, out_ch) {
            (2, 1) => stage.pending.extend(
                input
                    .chunks_exact(2)
                    .map(|f| (f32::from(f[0]) + f32::from(f[1])) * (0.5 / FULL_SCALE)),
            ),
            (1, 2) => {
                for &s in input {
                    let v = f32::from(s) / FULL_SCALE;
                    stage.pending.extend_from_slice(&[v, v]);
                }
            }
            _ => stage
                .pending
                .extend(input.iter().map(|&s| f32::from(s) / FULL_SCALE)),
        }

        let block_len = stage.block_in * out_ch;
        let mut consumed = 0;
        while stage.pending.len() - consumed >= block_len {
            let src = &stage.pending[consumed..consumed + block_len];
            consumed += block_len;
            let done = match (
                InterleavedSlice::new(src, out_ch, stage.block_in),
                InterleavedSlice::new_mut(&mut stage.block, out_ch, stage.block_out),
            ) {
                (Ok(inp), Ok(mut outp)) => {
                    stage.fft.process_into_buffer(&inp, &mut outp, None).is_ok()
                }
                _ => false,
            };
            if done {
                out.extend(stage.block.iter().map(|&v| to_i16(v)));
            } else {
                // Keep the timeline exact even if rubato refused the block.
                self.errors += 1;
                out.resize(out.len() + stage.block.len(), 0);
            }
        }
        if consumed > 0 {
            stage.pending.drain(..consumed);
        }
    }
}

/// Same-rate channel conversion (or copy) from s16 to s16.
fn convert_channels(input: &[i16], in_ch: usize, out_ch: usize, out: &mut Vec<i16>) {
    match (in_ch, out_ch) {
        (2, 1) => out.extend(
            input
                .chunks_exact(2)
                .map(|f| ((i32::from(f[0]) + i32::from(f[1])) / 2) as i16),
        ),
        (1, 2) => {
            out.reserve(input.len() * 2);
            for &s in input {
                out.extend_from_slice(&[s, s]);
            }
        }
        _ => out.extend_from_slice(input),
    }
}

/// f32 (±1.0 full scale) to s16 with rounding and clipping (the FFT filter can overshoot).
fn to_i16(v: f32) -> i16 {
    (v * FULL_SCALE).round().clamp(-32_768.0, 32_767.0) as i16
}

#[cfg(test)]
mod tests {
    use std::f64::consts::TAU;

    use super::*;

    fn sine(rate: u32, channels: usize, freq: f64, frames: usize, amp: f64) -> Vec<i16> {
        let mut v = Vec::with_capacity(frames * channels);
        for i in 0..frames {
            let s = ((TAU * freq * i as f64 / f64::from(rate)).sin() * amp) as i16;
            for _ in 0..channels {
                v.push(s);
            }
        }
        v
    }

    /// Estimates the frequency of a mono signal from its rising zero crossings.
    fn zero_cross_freq(x: &[i16], rate: u32) -> f64 {
        let crossings: Vec<usize> = x
            .windows(2)
            .enumerate()
            .filter(|(_, w)| w[0] < 0 && w[1] >= 0)
            .map(|(i, _)| i)
            .collect();
        let (first, last) = (crossings[0], crossings[crossings.len() - 1]);
        (crossings.len() - 1) as f64 * f64::from(rate) / (last - first) as f64
    }

    #[test]
    fn same_format_is_a_copy() {
        let mut r = ResamplerCore::new(16_000, 1, 16_000, 1).unwrap();
        assert!(r.is_passthrough());
        assert_eq!(r.delay_frames(), 0);
        let input: Vec<i16> = (0..500).map(|i| i as i16).collect();
        let mut out = Vec::new();
        r.process(&input, &mut out);
        assert_eq!(out, input);
    }

    #[test]
    fn downmix_is_mean_and_upmix_duplicates() {
        let mut down = ResamplerCore::new(16_000, 2, 16_000, 1).unwrap();
        assert!(!down.is_passthrough());
        let mut out = Vec::new();
        down.process(&[100, 300, -32768, -32768, 32767, 32767, 5, -6], &mut out);
        assert_eq!(out, vec![200, -32768, 32767, 0]);

        let mut up = ResamplerCore::new(24_000, 1, 24_000, 2).unwrap();
        let mut out = Vec::new();
        up.process(&[7, -9], &mut out);
        assert_eq!(out, vec![7, 7, -9, -9]);
    }

    #[test]
    fn resampled_downmix_is_mean() {
        // Left and right in antiphase cancel out; only the DC offset they share survives.
        let mut r = ResamplerCore::new(48_000, 2, 16_000, 1).unwrap();
        let mut input = Vec::new();
        for i in 0..9_600 {
            let s = ((TAU * 440.0 * i as f64 / 48_000.0).sin() * 8_000.0) as i16;
            input.extend_from_slice(&[1_000 + s, 1_000 - s]);
        }
        let mut out = Vec::new();
        r.process(&input, &mut out);
        let tail = &out[1_000..];
        assert!(
            tail.iter().all(|&v| (v - 1_000).abs() <= 20),
            "not the mean"
        );
    }

    #[test]
    fn exact_block_ratio_48k_to_16k() {
        let mut r = ResamplerCore::new(48_000, 2, 16_000, 1).unwrap();
        assert_eq!(r.delay_frames(), 160);
        let input = sine(48_000, 2, 1_000.0, 960, 10_000.0);
        let mut out = Vec::new();
        for k in 1..=10 {
            r.process(&input, &mut out);
            assert_eq!(out.len(), 320 * k, "960 frames in must give 320 out");
        }
        // Partial input is buffered: 500 + 460 frames make exactly one more block.
        r.process(&input[..1_000], &mut out);
        assert_eq!(out.len(), 3_200);
        assert_eq!(r.pending_frames(), 500);
        r.process(&input[1_000..], &mut out);
        assert_eq!(out.len(), 3_520);
    }

    #[test]
    fn keeps_frequency_48k_to_16k() {
        let mut r = ResamplerCore::new(48_000, 1, 16_000, 1).unwrap();
        let input = sine(48_000, 1, 1_000.0, 48_000, 12_000.0);
        let mut out = Vec::new();
        for block in input.chunks(960) {
            r.process(block, &mut out);
        }
        assert_eq!(out.len(), 16_000);
        let tail = &out[r.delay_frames() + 100..];
        let f = zero_cross_freq(tail, 16_000);
        assert!((f - 1_000.0).abs() < 2.0, "measured {f} Hz");
        let peak = tail.iter().map(|v| v.unsigned_abs()).max().unwrap();
        assert!((11_000..=13_000).contains(&peak), "amplitude {peak}");
    }

    #[test]
    fn sample_counts_for_44_1k_and_22_05k_paths() {
        for (in_rate, out_rate) in [
            (48_000, 44_100),
            (24_000, 22_050),
            (44_100, 16_000),
            (8_000, 44_100),
            (12_000, 22_050),
        ] {
            let mut r = ResamplerCore::new(in_rate, 1, out_rate, 1).unwrap();
            let input = sine(in_rate, 1, 440.0, in_rate as usize, 10_000.0);
            let mut out = Vec::new();
            // Odd-sized pushes exercise the internal buffering.
            for piece in input.chunks(777) {
                r.process(piece, &mut out);
            }
            assert_eq!(out.len(), out_rate as usize, "{in_rate} -> {out_rate}");
            let f = zero_cross_freq(&out[r.delay_frames() + 50..], out_rate);
            assert!((f - 440.0).abs() < 2.0, "{in_rate} -> {out_rate}: {f} Hz");
        }
    }

    #[test]
    fn upsampling_stereo_output() {
        let mut r = ResamplerCore::new(16_000, 1, 48_000, 2).unwrap();
        let input = sine(16_000, 1, 300.0, 320 * 5, 10_000.0);
        let mut out = Vec::new();
        r.process(&input, &mut out);
        assert_eq!(out.len(), 960 * 5 * 2);
        assert!(out.chunks_exact(2).all(|f| f[0] == f[1]));
    }

    #[test]
    fn rejects_unsupported_formats() {
        assert!(matches!(
            ResamplerCore::new(11_025, 1, 16_000, 1),
            Err(ResampleError::UnsupportedRate(11_025))
        ));
        assert!(matches!(
            ResamplerCore::new(48_000, 3, 16_000, 1),
            Err(ResampleError::UnsupportedChannels(3))
        ));
    }
}
