//! Audio input for whisper: a real 80-bin log-mel spectrogram of a deterministic synthesised
//! signal (tones, a chirp and a gated tone), computed as whisper's `log_mel_spectrogram` does.
//!
//! 16 kHz, `n_fft` 400 (periodic Hann), hop 160, centred frames with reflect padding, the last
//! frame dropped, power spectrum, Slaney-normalised mel filters (librosa's default, 0-8 kHz),
//! `log10(max(x, 1e-10))`, clamped to `max - 8`, then `(x + 4) / 4`.
//! The 400-point DFT is a small mixed-radix FFT (4*4*5*5) instead of an FFT crate: it is about
//! 60 lines and keeps the dependency list short; a naive DFT would be too slow in debug builds.
//! Input: frame count. Output: `[1, 80, frames]` f32. Must not import `cli` or `report`.

/// Sample rate whisper expects.
pub const SAMPLE_RATE: usize = 16_000;
/// FFT size.
pub const N_FFT: usize = 400;
/// Hop between frames.
pub const HOP: usize = 160;
/// Mel bins.
pub const N_MELS: usize = 80;
const FACTORS: [usize; 4] = [4, 4, 5, 5];

#[derive(Clone, Copy, Debug, Default)]
struct C(f64, f64);

impl C {
    fn mul(self, o: C) -> C {
        C(self.0 * o.0 - self.1 * o.1, self.0 * o.1 + self.1 * o.0)
    }
}

/// A mixed-radix decimation-in-time FFT for `N_FFT` points.
struct Fft {
    twiddles: Vec<C>,
}

impl Fft {
    fn new() -> Self {
        let twiddles = (0..N_FFT)
            .map(|k| {
                let a = -std::f64::consts::TAU * k as f64 / N_FFT as f64;
                C(a.cos(), a.sin())
            })
            .collect();
        Fft { twiddles }
    }

    fn run(&self, input: &[C], out: &mut [C]) {
        self.work(out, input, 0, 1, &FACTORS);
    }

    /// Transforms `input[offset + j * stride]` for `j < out.len()` into `out`.
    fn work(&self, out: &mut [C], input: &[C], offset: usize, stride: usize, factors: &[usize]) {
        let n = out.len();
        let p = factors[0];
        let m = n / p;
        if m == 1 {
            for (i, o) in out.iter_mut().enumerate() {
                *o = input[offset + i * stride];
            }
        } else {
            for i in 0..p {
                self.work(
                    &mut out[i * m..(i + 1) * m],
                    input,
                    offset + i * stride,
                    stride * p,
                    &factors[1..],
                );
            }
        }
        // Generic radix-p butterfly: X[u + q1*m] = sum_q Y_q[u] * W_n^(q * (u + q1*m)).
        let mut scratch = [C::default(); 5];
        for u in 0..m {
            for (q, s) in scratch.iter_mut().enumerate().take(p) {
                *s = out[u + q * m];
            }
            for q1 in 0..p {
                let k = u + q1 * m;
                let mut acc = scratch[0];
                let step = (stride * k) % N_FFT;
                let mut idx = 0;
                for s in scratch.iter().take(p).skip(1) {
                    idx = (idx + step) % N_FFT;
                    let t = s.mul(self.twiddles[idx]);
                    acc = C(acc.0 + t.0, acc.1 + t.1);
                }
                out[k] = acc;
            }
        }
    }
}

fn hz_to_mel(f: f64) -> f64 {
    let f_sp = 200.0 / 3.0;
    if f >= 1000.0 {
        15.0 + (f / 1000.0).ln() / (6.4f64.ln() / 27.0)
    } else {
        f / f_sp
    }
}

fn mel_to_hz(m: f64) -> f64 {
    if m >= 15.0 {
        1000.0 * ((6.4f64.ln() / 27.0) * (m - 15.0)).exp()
    } else {
        m * 200.0 / 3.0
    }
}

/// Slaney mel filters as (first bin, weights) per mel band, non-zero span only.
fn mel_filters() -> Vec<(usize, Vec<f64>)> {
    let bins = N_FFT / 2 + 1;
    let fft_freqs: Vec<f64> = (0..bins)
        .map(|k| k as f64 * SAMPLE_RATE as f64 / N_FFT as f64)
        .collect();
    let (lo, hi) = (hz_to_mel(0.0), hz_to_mel(SAMPLE_RATE as f64 / 2.0));
    let pts: Vec<f64> = (0..N_MELS + 2)
        .map(|i| mel_to_hz(lo + (hi - lo) * i as f64 / (N_MELS + 1) as f64))
        .collect();
    (0..N_MELS)
        .map(|i| {
            let enorm = 2.0 / (pts[i + 2] - pts[i]);
            let w: Vec<f64> = fft_freqs
                .iter()
                .map(|&f| {
                    let lower = (f - pts[i]) / (pts[i + 1] - pts[i]);
                    let upper = (pts[i + 2] - f) / (pts[i + 2] - pts[i + 1]);
                    lower.min(upper).max(0.0) * enorm
                })
                .collect();
            let first = w.iter().position(|&v| v > 0.0).unwrap_or(0);
            let last = w.iter().rposition(|&v| v > 0.0).unwrap_or(first);
            (first, w[first..=last].to_vec())
        })
        .collect()
}

/// The synthesised test signal: 440 Hz and 1.5 kHz (gated every 0.5 s) tones plus a 200 Hz to
/// 4 kHz chirp over the whole clip.
pub fn signal(samples: usize) -> Vec<f32> {
    let dur = samples as f64 / SAMPLE_RATE as f64;
    let rate = (4000.0 - 200.0) / dur.max(1e-9);
    (0..samples)
        .map(|i| {
            let t = i as f64 / SAMPLE_RATE as f64;
            let tau = std::f64::consts::TAU;
            let tone = 0.3 * (tau * 440.0 * t).sin();
            let chirp = 0.2 * (tau * (200.0 * t + 0.5 * rate * t * t)).sin();
            let gate = if (t / 0.5) as u64 % 2 == 0 { 1.0 } else { 0.0 };
            (tone + chirp + gate * 0.1 * (tau * 1500.0 * t).sin()) as f32
        })
        .collect()
}

/// Whisper's log-mel spectrogram of `audio` as `[N_MELS, frames]` row-major, where
/// `frames = audio.len() / HOP`.
pub fn log_mel(audio: &[f32]) -> Vec<f32> {
    let frames = audio.len() / HOP;
    let pad = N_FFT / 2;
    let len = audio.len();
    // Reflect padding (numpy "reflect": the edge sample is not repeated).
    let at = |i: isize| -> f64 {
        let n = len as isize;
        let j = if i < 0 {
            -i
        } else if i >= n {
            2 * (n - 1) - i
        } else {
            i
        };
        f64::from(audio[j.clamp(0, n - 1) as usize])
    };
    let window: Vec<f64> = (0..N_FFT)
        .map(|n| 0.5 - 0.5 * (std::f64::consts::TAU * n as f64 / N_FFT as f64).cos())
        .collect();
    let fft = Fft::new();
    let filters = mel_filters();
    let mut mel = vec![0f64; N_MELS * frames];
    let mut buf = vec![C::default(); N_FFT];
    let mut spec = vec![C::default(); N_FFT];
    let mut power = vec![0f64; N_FFT / 2 + 1];
    for t in 0..frames {
        let start = (t * HOP) as isize - pad as isize;
        for (n, b) in buf.iter_mut().enumerate() {
            *b = C(at(start + n as isize) * window[n], 0.0);
        }
        fft.run(&buf, &mut spec);
        for (k, p) in power.iter_mut().enumerate() {
            *p = spec[k].0 * spec[k].0 + spec[k].1 * spec[k].1;
        }
        for (m, (first, w)) in filters.iter().enumerate() {
            mel[m * frames + t] = w.iter().zip(&power[*first..]).map(|(a, b)| a * b).sum();
        }
    }
    let logs: Vec<f64> = mel.iter().map(|&v| v.max(1e-10).log10()).collect();
    let max = logs.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    logs.iter()
        .map(|&v| ((v.max(max - 8.0) + 4.0) / 4.0) as f32)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fft_matches_naive_dft() {
        let x: Vec<C> = (0..N_FFT)
            .map(|i| C(((i * 7) % 13) as f64 - 6.0, 0.0))
            .collect();
        let mut out = vec![C::default(); N_FFT];
        Fft::new().run(&x, &mut out);
        for k in [0usize, 1, 7, 100, 199, 200, 399] {
            let mut acc = C(0.0, 0.0);
            for (n, v) in x.iter().enumerate() {
                let a = -std::f64::consts::TAU * (k * n % N_FFT) as f64 / N_FFT as f64;
                acc = C(acc.0 + v.0 * a.cos(), acc.1 + v.0 * a.sin());
            }
            assert!(
                (acc.0 - out[k].0).abs() < 1e-6 && (acc.1 - out[k].1).abs() < 1e-6,
                "bin {k}"
            );
        }
    }

    #[test]
    fn log_mel_shape_and_range() {
        let frames = 300;
        let m = log_mel(&signal(frames * HOP));
        assert_eq!(m.len(), N_MELS * frames);
        let max = m.iter().copied().fold(f32::MIN, f32::max);
        let min = m.iter().copied().fold(f32::MAX, f32::min);
        // After the clamp the dynamic range is at most 8 decades = 2.0 in normalised units.
        assert!(max - min <= 2.0 + 1e-6, "range {min}..{max}");
        assert!(m.iter().all(|v| v.is_finite()));
    }

    #[test]
    fn mel_filters_are_slaney_normalised() {
        let f = mel_filters();
        assert_eq!(f.len(), N_MELS);
        // whisper's mel_filters.npz first band peaks at bin 1 with about 0.0246.
        assert_eq!(f[0].0, 1);
        assert!((f[0].1[0] - 0.02486).abs() < 2e-3, "{}", f[0].1[0]);
    }
}
