//! Whisper's log-mel spectrogram: 25 ms Hann windows every 10 ms over 16 kHz audio, a Slaney
//! mel filterbank, log10, an 8-decade floor below the loudest bin, then `(x + 4) / 4`.
//!
//! Computed as faster-whisper's feature extractor does (the reference the tests compare with):
//! reflect padding around the signal (`center=True`), the last STFT frame dropped, and the floor
//! taken over the whole file. The FFT is a real FFT in f64 (a few ms per 30 s of audio).

use std::sync::Arc;

use realfft::{RealFftPlanner, RealToComplex};

pub const SAMPLE_RATE: usize = 16_000;
pub const N_FFT: usize = 400;
pub const HOP: usize = 160;
/// Mel frames in one 30 s window.
pub const WINDOW_FRAMES: usize = 3000;
/// Seconds per mel frame.
pub const FRAME_SECONDS: f64 = HOP as f64 / SAMPLE_RATE as f64;

/// The Slaney-style mel filterbank librosa computes (`htk=False`, `norm="slaney"`), as
/// `n_mels` rows of `N_FFT / 2 + 1` weights.
pub fn mel_filters(n_mels: usize) -> Vec<f64> {
    let bins = N_FFT / 2 + 1;
    let fft_freqs: Vec<f64> = (0..bins)
        .map(|i| i as f64 * SAMPLE_RATE as f64 / N_FFT as f64)
        .collect();
    // Mel scale: linear below 1 kHz (200/3 Hz per mel), logarithmic above.
    let f_sp = 200.0 / 3.0;
    let min_log_hz = 1000.0;
    let min_log_mel = min_log_hz / f_sp;
    let logstep = 6.4f64.ln() / 27.0;
    let max_mel = hz_to_mel(SAMPLE_RATE as f64 / 2.0);
    let freqs: Vec<f64> = (0..n_mels + 2)
        .map(|i| {
            let mel = max_mel * i as f64 / (n_mels + 1) as f64;
            if mel >= min_log_mel {
                min_log_hz * (logstep * (mel - min_log_mel)).exp()
            } else {
                f_sp * mel
            }
        })
        .collect();
    let mut weights = vec![0.0; n_mels * bins];
    for m in 0..n_mels {
        let enorm = 2.0 / (freqs[m + 2] - freqs[m]);
        for (b, &f) in fft_freqs.iter().enumerate() {
            let lower = (f - freqs[m]) / (freqs[m + 1] - freqs[m]);
            let upper = (freqs[m + 2] - f) / (freqs[m + 2] - freqs[m + 1]);
            weights[m * bins + b] = lower.min(upper).max(0.0) * enorm;
        }
    }
    weights
}

fn hz_to_mel(hz: f64) -> f64 {
    let f_sp = 200.0 / 3.0;
    let min_log_hz = 1000.0;
    if hz >= min_log_hz {
        min_log_hz / f_sp + (hz / min_log_hz).ln() / (6.4f64.ln() / 27.0)
    } else {
        hz / f_sp
    }
}

/// A log-mel spectrogram: `n_mels` rows of `frames` values.
#[derive(Debug, Clone)]
pub struct LogMel {
    pub n_mels: usize,
    pub frames: usize,
    pub data: Vec<f32>,
}

impl LogMel {
    /// The `WINDOW_FRAMES`-frame window starting at `start`, zero-padded past the end
    /// (`n_mels * WINDOW_FRAMES` values, row-major).
    pub fn window(&self, start: usize, len: usize) -> Vec<f32> {
        let mut out = vec![0.0f32; self.n_mels * WINDOW_FRAMES];
        let len = len
            .min(WINDOW_FRAMES)
            .min(self.frames.saturating_sub(start));
        for m in 0..self.n_mels {
            let row = &self.data[m * self.frames..(m + 1) * self.frames];
            out[m * WINDOW_FRAMES..m * WINDOW_FRAMES + len]
                .copy_from_slice(&row[start..start + len]);
        }
        out
    }
}

/// Computes log-mel spectrograms; cheap to clone and share.
#[derive(Clone)]
pub struct MelExtractor {
    n_mels: usize,
    filters: Arc<Vec<f64>>,
    /// Per mel band, the range of FFT bins with non-zero weight (each triangle spans a few).
    support: Arc<Vec<(usize, usize)>>,
    window: Arc<Vec<f64>>,
    fft: Arc<dyn RealToComplex<f64>>,
}

impl std::fmt::Debug for MelExtractor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MelExtractor")
            .field("n_mels", &self.n_mels)
            .finish()
    }
}

impl MelExtractor {
    pub fn new(n_mels: usize) -> MelExtractor {
        // Periodic Hann window (numpy's `hanning(N + 1)[:-1]`), rounded to f32 like the reference.
        let window = (0..N_FFT)
            .map(|i| {
                let w = 0.5 - 0.5 * (2.0 * std::f64::consts::PI * i as f64 / N_FFT as f64).cos();
                f64::from(w as f32)
            })
            .collect();
        let filters: Vec<f64> = mel_filters(n_mels)
            .into_iter()
            .map(|w| f64::from(w as f32))
            .collect();
        let bins = N_FFT / 2 + 1;
        let support = (0..n_mels)
            .map(|m| {
                let row = &filters[m * bins..(m + 1) * bins];
                let lo = row.iter().position(|&w| w != 0.0).unwrap_or(0);
                let hi = row.iter().rposition(|&w| w != 0.0).map_or(0, |i| i + 1);
                (lo, hi.max(lo))
            })
            .collect();
        MelExtractor {
            n_mels,
            filters: Arc::new(filters),
            support: Arc::new(support),
            window: Arc::new(window),
            fft: RealFftPlanner::<f64>::new().plan_fft_forward(N_FFT),
        }
    }

    pub fn n_mels(&self) -> usize {
        self.n_mels
    }

    /// Log-mel of 16 kHz mono `samples`, with `padding` zero samples appended first
    /// (faster-whisper appends 160, one frame).
    pub fn compute(&self, samples: &[f32], padding: usize) -> LogMel {
        let n = samples.len() + padding;
        let sample = |i: usize| samples.get(i).copied().unwrap_or(0.0);
        let pad = N_FFT / 2;
        let padded_len = n + 2 * pad;
        // Frames over the reflect-padded signal, minus the last one (as the reference does).
        let frames = (1 + (padded_len - N_FFT) / HOP).saturating_sub(1);
        let bins = N_FFT / 2 + 1;
        let mut input = self.fft.make_input_vec();
        let mut spectrum = self.fft.make_output_vec();
        let mut scratch = self.fft.make_scratch_vec();
        let mut power = vec![0.0f64; bins];
        let mut mel = vec![0.0f64; self.n_mels * frames];
        for f in 0..frames {
            for (k, slot) in input.iter_mut().enumerate() {
                let x = sample(reflect(f * HOP + k, pad, n));
                *slot = f64::from(x) * self.window[k];
            }
            // The buffers have the planned sizes, so the transform cannot fail.
            if self
                .fft
                .process_with_scratch(&mut input, &mut spectrum, &mut scratch)
                .is_err()
            {
                continue;
            }
            for (p, c) in power.iter_mut().zip(&spectrum) {
                // Rounded through f32 as the reference's complex64 cast does.
                *p = f64::from(c.norm_sqr().sqrt() as f32).powi(2);
            }
            for (m, &(lo, hi)) in self.support.iter().enumerate() {
                let row = &self.filters[m * bins + lo..m * bins + hi];
                mel[m * frames + f] = row.iter().zip(&power[lo..hi]).map(|(w, p)| w * p).sum();
            }
        }
        let mut data: Vec<f32> = mel.iter().map(|&v| v.max(1e-10).log10() as f32).collect();
        let max = data.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        for v in &mut data {
            *v = (v.max(max - 8.0) + 4.0) / 4.0;
        }
        LogMel {
            n_mels: self.n_mels,
            frames,
            data,
        }
    }
}

/// Index into the signal of length `n` for position `i` of its reflect-padded form (`pad` on
/// each side), reflecting as often as needed for signals shorter than the padding.
fn reflect(i: usize, pad: usize, n: usize) -> usize {
    if n <= 1 {
        return 0;
    }
    let period = 2 * (n - 1);
    let j = (i as i64 - pad as i64).rem_euclid(period as i64) as usize;
    if j < n { j } else { period - j }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reflect_padding_matches_numpy() {
        // np.pad([0, 1, 2, 3], 3, mode="reflect") = [3, 2, 1, 0, 1, 2, 3, 2, 1, 0]
        let got: Vec<usize> = (0..10).map(|i| reflect(i, 3, 4)).collect();
        assert_eq!(got, [3, 2, 1, 0, 1, 2, 3, 2, 1, 0]);
    }

    #[test]
    fn a_tone_lights_the_mel_band_of_its_frequency() {
        let tone: Vec<f32> = (0..SAMPLE_RATE)
            .map(|i| (2.0 * std::f32::consts::PI * 1000.0 * i as f32 / 16000.0).sin())
            .collect();
        let mel = MelExtractor::new(80).compute(&tone, 160);
        assert_eq!(mel.frames, 101);
        let frame = 50;
        let col: Vec<f32> = (0..80).map(|m| mel.data[m * mel.frames + frame]).collect();
        let peak = col
            .iter()
            .enumerate()
            .max_by(|a, b| a.1.total_cmp(b.1))
            .map(|(i, _)| i)
            .unwrap_or(0);
        // 1 kHz is mel 15 on the Slaney scale; band m of 80 peaks at mel 45.2456 (m + 1) / 81,
        // so band 26 (mel 15.08) is the closest.
        assert_eq!(peak, 26);
    }
}
