//! Frequency measurement for test audio: which tones are in a recording, to well under 1 Hz.
//!
//! Method: Hann window over (at most) [`MAX_ANALYSIS`] samples from the middle of the input,
//! zero-padded FFT (≥ 2× padding, ≥ 65 536 points), local maxima ranked by power, then a
//! parabolic fit of the log power around each peak. For a Hann window the log-power mainlobe
//! is close to a parabola, so the interpolated peak lands within a few hundredths of a bin
//! (bins are ≤ 0.25 Hz at 16 kHz), i.e. ~0.01 Hz for steady tones — far inside the ±2 Hz the
//! tests need — while costing one FFT. Capping the analysis length keeps it fast in debug
//! builds (tests are not optimised): 4 s at 16 kHz already resolves 0.25 Hz, so longer
//! recordings add time but no accuracy.

/// Longest stretch analysed (samples); the middle of longer inputs is used.
pub const MAX_ANALYSIS: usize = 1 << 16;
/// Smallest FFT size (zero padding), so that short inputs still get fine bins.
const MIN_FFT: usize = 1 << 16;
/// Frequencies below this are ignored (DC and rumble are never test tones).
const MIN_FREQ_HZ: f64 = 20.0;
/// Two reported tones are at least this many native bins (rate/len) apart: inside that
/// distance a maximum is part of the same Hann mainlobe (half-width 2 bins) or its shoulder.
const PEAK_EXCLUSION_BINS: f64 = 3.0;

/// In-place iterative radix-2 complex FFT; `re.len()` must be a power of two.
pub fn fft(re: &mut [f64], im: &mut [f64]) {
    let n = re.len();
    assert!(
        n.is_power_of_two() && im.len() == n,
        "fft needs power-of-two buffers"
    );
    let mut j = 0usize;
    for i in 1..n {
        let mut bit = n >> 1;
        while j & bit != 0 {
            j ^= bit;
            bit >>= 1;
        }
        j |= bit;
        if i < j {
            re.swap(i, j);
            im.swap(i, j);
        }
    }
    // Twiddles for the largest stage; smaller stages use a stride into the same table.
    let half = n / 2;
    let (tw_re, tw_im): (Vec<f64>, Vec<f64>) = (0..half)
        .map(|k| {
            let a = -std::f64::consts::TAU * k as f64 / n as f64;
            (a.cos(), a.sin())
        })
        .unzip();
    let mut len = 2;
    while len <= n {
        let step = n / len;
        let h = len / 2;
        for start in (0..n).step_by(len) {
            for k in 0..h {
                let (wr, wi) = (tw_re[k * step], tw_im[k * step]);
                let (a, b) = (start + k, start + k + h);
                let xr = re[b] * wr - im[b] * wi;
                let xi = re[b] * wi + im[b] * wr;
                re[b] = re[a] - xr;
                im[b] = im[a] - xi;
                re[a] += xr;
                im[a] += xi;
            }
        }
        len <<= 1;
    }
}

/// The `n` strongest steady tones in `samples` (Hz), sorted ascending.
///
/// Returns fewer than `n` if the spectrum has fewer distinct peaks. Intended for recordings
/// of at least ~0.5 s; accuracy improves with length up to [`MAX_ANALYSIS`] samples.
pub fn dominant_frequencies(samples: &[i16], rate: u32, n: usize) -> Vec<f64> {
    let seg = middle(samples, MAX_ANALYSIS);
    if seg.len() < 16 || n == 0 {
        return Vec::new();
    }
    let len = seg.len();
    let nfft = (len.next_power_of_two() * 2).max(MIN_FFT);
    let mean = seg.iter().map(|&s| f64::from(s)).sum::<f64>() / len as f64;
    let mut re = vec![0.0; nfft];
    let mut im = vec![0.0; nfft];
    for (i, &s) in seg.iter().enumerate() {
        let w = 0.5 - 0.5 * (std::f64::consts::TAU * i as f64 / (len - 1) as f64).cos();
        re[i] = (f64::from(s) - mean) * w;
    }
    fft(&mut re, &mut im);
    let power: Vec<f64> = (0..=nfft / 2)
        .map(|k| re[k] * re[k] + im[k] * im[k])
        .collect();

    let hz_per_bin = f64::from(rate) / nfft as f64;
    let first = ((MIN_FREQ_HZ / hz_per_bin).ceil() as usize).max(1);
    let mut peaks: Vec<usize> = (first..power.len() - 1)
        .filter(|&k| power[k] > power[k - 1] && power[k] >= power[k + 1] && power[k] > 0.0)
        .collect();
    peaks.sort_by(|&a, &b| power[b].total_cmp(&power[a]));

    let exclusion = PEAK_EXCLUSION_BINS * nfft as f64 / len as f64;
    let mut chosen: Vec<usize> = Vec::with_capacity(n);
    for k in peaks {
        if chosen.len() == n {
            break;
        }
        if chosen
            .iter()
            .all(|&c| (c as f64 - k as f64).abs() > exclusion)
        {
            chosen.push(k);
        }
    }
    let mut freqs: Vec<f64> = chosen
        .into_iter()
        .map(|k| (k as f64 + parabolic_offset(&power, k)) * hz_per_bin)
        .collect();
    freqs.sort_by(f64::total_cmp);
    freqs
}

/// Sub-bin offset of the peak at `k` from a parabola through the log power of k-1, k, k+1.
fn parabolic_offset(power: &[f64], k: usize) -> f64 {
    let (a, b, c) = (power[k - 1].ln(), power[k].ln(), power[k + 1].ln());
    let denom = a - 2.0 * b + c;
    if !denom.is_finite() || denom.abs() < 1e-12 {
        return 0.0;
    }
    (0.5 * (a - c) / denom).clamp(-0.5, 0.5)
}

/// Amplitude (peak, in sample units) of the `freq` component, by least squares over
/// `samples` — e.g. to check that a tone is present or silent in a stretch.
pub fn tone_amplitude(samples: &[i16], rate: u32, freq: f64) -> f64 {
    if samples.is_empty() {
        return 0.0;
    }
    let w = std::f64::consts::TAU * freq / f64::from(rate);
    let (mut cc, mut ss, mut cs, mut xc, mut xs) = (0.0, 0.0, 0.0, 0.0, 0.0);
    for (i, &s) in samples.iter().enumerate() {
        let (sn, cn) = (w * i as f64).sin_cos();
        let x = f64::from(s);
        cc += cn * cn;
        ss += sn * sn;
        cs += cn * sn;
        xc += x * cn;
        xs += x * sn;
    }
    let det = cc * ss - cs * cs;
    if det.abs() < 1e-9 {
        return 0.0;
    }
    let a = (xc * ss - xs * cs) / det;
    let b = (xs * cc - xc * cs) / det;
    a.hypot(b)
}

fn middle(samples: &[i16], max: usize) -> &[i16] {
    if samples.len() <= max {
        samples
    } else {
        let start = (samples.len() - max) / 2;
        &samples[start..start + max]
    }
}
