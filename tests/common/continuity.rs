//! Continuity check for a sum-of-tones recording: finds gaps, dropped or duplicated
//! stretches (even a few samples) and glitches, while tolerating Opus coding noise.
//!
//! Model: the signal is `Σ_k A_k·cos(ω_k·n + φ_k)` with the measured frequencies and constant
//! amplitudes. Each 20 ms window gets its own least-squares fit of `(A_k, φ_k)`, with the
//! phase expressed in *absolute* sample time `n`, so a continuous tone gives the same phase in
//! every window. The reference amplitudes are the median over all windows (robust to a few
//! damaged ones). Window `w` is then predicted from the reference amplitudes and the phases
//! fitted on window `w-1` — "continued" phase — and the error is
//! `Σ (x − prediction)² / (window · P_ref)`, with `P_ref = Σ A_k²/2` the tone power: 0 for a
//! perfect continuation, ~1 for silence, ~2 for a phase flip.
//!
//! Why continue from the previous window rather than from one global fit: a measured
//! frequency off by δf makes the global phase drift by 2π·δf·t (0.3 rad after 1 s at
//! 0.05 Hz), which would read as damage on long recordings; over one 20 ms step the drift is
//! ~0.006 rad, negligible. A jump is still caught at the window where it happens, then the
//! tracker re-locks and later windows are clean, so each event costs 1–3 bad windows.
//!
//! A second, per-sample criterion (largest deviation from the prediction) catches clicks too
//! short to move the mean-square error.
//!
//! Sensitivity: removing or duplicating `d` samples shifts tone `k` by `ω_k·d`; for 440/660 Hz
//! at 16 kHz one sample gives an error ≈ 0.04, seven samples ≈ 1.5 (see the thresholds). A
//! shift that is a whole number of periods of *every* tone is invisible by construction
//! (800 samples = 50 ms for 440 + 660 Hz at 16 kHz): that limitation is inherent to tones.

use std::fmt;
use std::ops::Range;

/// Analysis settings; [`ContinuityConfig::default`] is what [`continuity_report`] uses.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ContinuityConfig {
    /// Window length (ms); 20 ms matches the Opus frame and the chunk granularity.
    pub window_ms: u32,
    /// Leading audio to ignore (ms), e.g. the decoder's warm-up ([`OPUS_WARMUP_MS`]).
    pub skip_ms: u32,
    /// A window whose relative error exceeds this is bad. See [`DEFAULT_THRESHOLD`].
    pub threshold: f64,
    /// A window whose largest single-sample deviation, relative to the summed reference
    /// amplitudes, exceeds this is bad too. See [`DEFAULT_PEAK_THRESHOLD`].
    pub peak_threshold: f64,
}

/// Default bad-window threshold on the mean-square error (relative to the tone power).
///
/// Tuned on real Opus audio (48 kHz stereo 440/660 Hz encoded by libopus, decoded to 16 kHz
/// mono; worst window over 10 s): ≤ 0.0001 at libopus' default (~99 kbit/s) and at 96 kbit/s
/// VoIP (aiortc's setting), 0.0002 at 64 kbit/s (the testsrc setting), 0.005 at 32 kbit/s,
/// 0.008–0.015 at 24 kbit/s, 0.018 at 16 kbit/s, 0.065 at 12 kbit/s. Damage: a 1-sample slip
/// gives 0.038, 2 samples 0.15, 7 samples 1.5, a 20 ms cut or repeat ≥ 0.8, silence ~1.
/// 0.02 flags a single-sample slip while tolerating any bitrate from 24 kbit/s up (raise it
/// via [`ContinuityConfig`] for lower bitrates).
pub const DEFAULT_THRESHOLD: f64 = 0.02;

/// Default bad-window threshold on the largest single-sample deviation, as a fraction of the
/// summed reference amplitudes (the signal's possible peak).
///
/// Catches short glitches that barely move the mean error (a 4000-LSB click on two ~4900-LSB
/// tones reads 0.41 here but only 0.002 as mean error). Clean Opus peaks at 0.01 (≥ 64 kbit/s),
/// 0.1 (32 kbit/s), 0.13–0.17 (24 kbit/s), 0.2 (16 kbit/s); 0.35 keeps a 2× margin at 24 kbit/s.
pub const DEFAULT_PEAK_THRESHOLD: f64 = 0.35;

/// Leading audio (ms) to skip after a fresh Opus decoder (+ resampler) starts: libopus
/// outputs its 6.5 ms lookahead as a fade-in and the FFT resampler adds ~10 ms of delay/ramp.
/// Measured in the self-tests: only the first 20 ms window is off for a direct 16 kHz decode
/// and the first two (40 ms) with the 48 kHz decode + rubato path; 60 ms leaves margin.
pub const OPUS_WARMUP_MS: u32 = 60;

impl Default for ContinuityConfig {
    fn default() -> Self {
        Self {
            window_ms: 20,
            skip_ms: 0,
            threshold: DEFAULT_THRESHOLD,
            peak_threshold: DEFAULT_PEAK_THRESHOLD,
        }
    }
}

impl ContinuityConfig {
    /// Default settings, skipping [`OPUS_WARMUP_MS`] of warm-up.
    pub fn after_warmup() -> Self {
        Self {
            skip_ms: OPUS_WARMUP_MS,
            ..Self::default()
        }
    }
}

/// Result of [`continuity_report`].
#[derive(Debug, Clone)]
pub struct Continuity {
    pub rate: u32,
    /// Samples per window.
    pub window: usize,
    /// First analysed sample (after `skip_ms`).
    pub start: usize,
    pub freqs: Vec<f64>,
    /// Reference peak amplitude of each tone (sample units).
    pub ref_amplitudes: Vec<f64>,
    pub threshold: f64,
    /// Relative error of every window.
    pub errors: Vec<f64>,
    /// Largest single-sample deviation of every window, relative to `Σ ref_amplitudes`.
    pub peak_errors: Vec<f64>,
    pub peak_threshold: f64,
    /// Indices of bad windows.
    pub bad: Vec<usize>,
    /// Largest error and its window index (0 / 0 when there is no window).
    pub worst: f64,
    pub worst_window: usize,
}

impl Continuity {
    pub fn is_continuous(&self) -> bool {
        self.bad.is_empty()
    }

    pub fn bad_count(&self) -> usize {
        self.bad.len()
    }

    /// Sample offset (in the analysed slice) of window `w`.
    pub fn window_start(&self, w: usize) -> usize {
        self.start + w * self.window
    }

    /// Sample offsets of the bad windows.
    pub fn bad_positions(&self) -> Vec<usize> {
        self.bad.iter().map(|&w| self.window_start(w)).collect()
    }

    /// Start times (s) of the bad windows.
    pub fn bad_times(&self) -> Vec<f64> {
        self.bad_positions()
            .into_iter()
            .map(|p| p as f64 / f64::from(self.rate))
            .collect()
    }

    /// Largest single-sample deviation over all windows (see [`DEFAULT_PEAK_THRESHOLD`]).
    pub fn worst_peak(&self) -> f64 {
        self.peak_errors.iter().copied().fold(0.0, f64::max)
    }

    /// Sample offset of the worst window.
    pub fn worst_at(&self) -> usize {
        self.window_start(self.worst_window)
    }

    /// Runs of adjacent bad windows merged into sample ranges: one entry per discontinuity
    /// event (a single cut usually spans 1–3 windows).
    pub fn events(&self) -> Vec<Range<usize>> {
        let mut out: Vec<Range<usize>> = Vec::new();
        for &w in &self.bad {
            let r = self.window_start(w)..self.window_start(w + 1);
            match out.last_mut() {
                Some(last) if last.end >= r.start => last.end = r.end,
                _ => out.push(r),
            }
        }
        out
    }
}

impl fmt::Display for Continuity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let shown: Vec<String> = self
            .bad
            .iter()
            .take(12)
            .map(|&w| {
                format!(
                    "{:.3}s({:.3})",
                    self.window_start(w) as f64 / f64::from(self.rate),
                    self.errors[w]
                )
            })
            .collect();
        write!(
            f,
            "{} windows of {} samples from {}, {} bad (threshold {}/{}), worst {:.4} at {:.3}s, \
             worst peak {:.3}, ref amplitudes {:?}; bad: [{}{}]",
            self.errors.len(),
            self.window,
            self.start,
            self.bad.len(),
            self.threshold,
            self.peak_threshold,
            self.worst,
            self.worst_at() as f64 / f64::from(self.rate),
            self.worst_peak(),
            self.ref_amplitudes
                .iter()
                .map(|a| a.round())
                .collect::<Vec<_>>(),
            shown.join(", "),
            if self.bad.len() > 12 { ", …" } else { "" }
        )
    }
}

/// [`continuity_report_with`] with [`ContinuityConfig::default`] (no warm-up skipped).
pub fn continuity_report(samples: &[i16], rate: u32, freqs: &[f64]) -> Continuity {
    continuity_report_with(samples, rate, freqs, &ContinuityConfig::default())
}

/// Check that `samples` is one uninterrupted sum of the tones `freqs` (see module docs).
///
/// Panics if the tones are absent (median amplitude ~0): there is nothing to check then, and
/// a silent recording must not pass as "continuous".
pub fn continuity_report_with(
    samples: &[i16],
    rate: u32,
    freqs: &[f64],
    cfg: &ContinuityConfig,
) -> Continuity {
    assert!(
        !freqs.is_empty(),
        "continuity_report needs at least one tone"
    );
    let window = (rate as usize * cfg.window_ms as usize / 1000).max(1);
    let start = (rate as usize * cfg.skip_ms as usize / 1000).min(samples.len());
    let windows = (samples.len() - start) / window;
    let omegas: Vec<f64> = freqs
        .iter()
        .map(|f| std::f64::consts::TAU * f / f64::from(rate))
        .collect();

    let fits: Vec<Vec<(f64, f64)>> = (0..windows)
        .map(|w| {
            let s = start + w * window;
            fit_tones(&samples[s..s + window], s, &omegas)
        })
        .collect();
    let ref_amplitudes: Vec<f64> = (0..freqs.len())
        .map(|k| median(fits.iter().map(|f| f[k].0.hypot(f[k].1)).collect()))
        .collect();
    let p_ref: f64 = ref_amplitudes.iter().map(|a| a * a / 2.0).sum();
    assert!(
        windows == 0 || p_ref > 1.0,
        "continuity_report: no tone of {freqs:?} Hz in the signal (reference amplitudes {ref_amplitudes:?})"
    );

    let amp_sum: f64 = ref_amplitudes.iter().sum();
    let mut errors = Vec::with_capacity(windows);
    let mut peak_errors = Vec::with_capacity(windows);
    // Phases to continue from, as unit phasors (cos φ, sin φ) per tone.
    let mut locked: Vec<(f64, f64)> = Vec::new();
    for (w, fit) in fits.iter().enumerate() {
        if w == 0 || locked.is_empty() {
            locked = unit_phasors(fit);
        }
        let s = start + w * window;
        let predicted: Vec<(f64, f64)> = locked
            .iter()
            .zip(&ref_amplitudes)
            .map(|(&(c, si), &a)| (a * c, a * si))
            .collect();
        let (sq, peak) = window_error(&samples[s..s + window], s, &omegas, &predicted);
        errors.push(sq / (window as f64 * p_ref));
        peak_errors.push(peak / amp_sum);
        // Re-lock only on windows that carry the tones at about the right level: through a
        // gap the last good phase is kept, so the window after the gap is judged against it.
        let level_ok = fit
            .iter()
            .zip(&ref_amplitudes)
            .all(|(&(a, b), &r)| (0.5 * r..=2.0 * r).contains(&a.hypot(b)));
        if level_ok {
            locked = unit_phasors(fit);
        }
    }

    let bad: Vec<usize> = (0..errors.len())
        .filter(|&w| {
            errors[w] > cfg.threshold
                || peak_errors[w] > cfg.peak_threshold
                || !errors[w].is_finite()
        })
        .collect();
    let (worst_window, worst) = errors.iter().copied().enumerate().fold(
        (0, 0.0),
        |best, (i, e)| if e > best.1 { (i, e) } else { best },
    );
    Continuity {
        rate,
        window,
        start,
        freqs: freqs.to_vec(),
        ref_amplitudes,
        threshold: cfg.threshold,
        errors,
        peak_errors,
        peak_threshold: cfg.peak_threshold,
        bad,
        worst,
        worst_window,
    }
}

/// Least-squares `(a_k, b_k)` with `x[i] ≈ Σ a_k cos(ω_k n) + b_k sin(ω_k n)`, `n = offset + i`.
/// A singular system (tones closer than ~1/window) yields zeros, which then reads as damage.
fn fit_tones(x: &[i16], offset: usize, omegas: &[f64]) -> Vec<(f64, f64)> {
    let m = omegas.len() * 2;
    let mut g = vec![vec![0.0; m]; m];
    let mut h = vec![0.0; m];
    let mut basis = vec![0.0; m];
    for (i, &v) in x.iter().enumerate() {
        let n = (offset + i) as f64;
        for (k, &om) in omegas.iter().enumerate() {
            let (sn, cn) = (om * n).sin_cos();
            basis[2 * k] = cn;
            basis[2 * k + 1] = sn;
        }
        let v = f64::from(v);
        for (r, row) in g.iter_mut().enumerate() {
            h[r] += basis[r] * v;
            for (cell, &bc) in row.iter_mut().zip(&basis) {
                *cell += basis[r] * bc;
            }
        }
    }
    let sol = solve(g, h).unwrap_or_else(|| vec![0.0; m]);
    sol.chunks_exact(2).map(|p| (p[0], p[1])).collect()
}

/// Summed squared error and largest absolute error of `x` against the tone model with
/// coefficients `coeffs` (same layout as [`fit_tones`]).
fn window_error(x: &[i16], offset: usize, omegas: &[f64], coeffs: &[(f64, f64)]) -> (f64, f64) {
    x.iter()
        .enumerate()
        .map(|(i, &v)| {
            let n = (offset + i) as f64;
            let model: f64 = omegas
                .iter()
                .zip(coeffs)
                .map(|(&om, &(a, b))| {
                    let (sn, cn) = (om * n).sin_cos();
                    a * cn + b * sn
                })
                .sum();
            (f64::from(v) - model).abs()
        })
        .fold((0.0, 0.0), |(sq, peak), d| (sq + d * d, f64::max(peak, d)))
}

fn unit_phasors(fit: &[(f64, f64)]) -> Vec<(f64, f64)> {
    fit.iter()
        .map(|&(a, b)| {
            let amp = a.hypot(b);
            if amp > 0.0 {
                (a / amp, b / amp)
            } else {
                (1.0, 0.0)
            }
        })
        .collect()
}

/// Gaussian elimination with partial pivoting for the small normal equations.
fn solve(mut a: Vec<Vec<f64>>, mut b: Vec<f64>) -> Option<Vec<f64>> {
    let n = b.len();
    let scale = a
        .iter()
        .flatten()
        .fold(0.0f64, |m, v| m.max(v.abs()))
        .max(f64::MIN_POSITIVE);
    for col in 0..n {
        let pivot = (col..n).max_by(|&i, &j| a[i][col].abs().total_cmp(&a[j][col].abs()))?;
        if a[pivot][col].abs() < 1e-9 * scale {
            return None;
        }
        a.swap(col, pivot);
        b.swap(col, pivot);
        let (done, rest) = a.split_at_mut(col + 1);
        let pivot_row = &done[col];
        for (i, row) in rest.iter_mut().enumerate() {
            let f = row[col] / pivot_row[col];
            for (x, &p) in row.iter_mut().zip(pivot_row).skip(col) {
                *x -= f * p;
            }
            b[col + 1 + i] -= f * b[col];
        }
    }
    let mut x = vec![0.0; n];
    for row in (0..n).rev() {
        let s: f64 = (row + 1..n).map(|c| a[row][c] * x[c]).sum();
        x[row] = (b[row] - s) / a[row][row];
    }
    Some(x)
}

fn median(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}
