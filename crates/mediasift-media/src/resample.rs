//! Streaming conversion of mono audio to the pipeline's 16 kHz, through rubato's FFT resampler
//! (band-limited, so nothing above 8 kHz folds back into the speech band).

use rubato::audioadapter_buffers::direct::InterleavedSlice;
use rubato::{Fft, FixedSync, Indexing, Resampler};

/// The sample rate every audio stage works at (Whisper's and Silero VAD's).
pub const TARGET_RATE: u32 = 16_000;

const CHUNK: usize = 1024;

/// Resamples a mono stream chunk by chunk, so the input never has to be held whole.
pub struct StreamResampler {
    inner: Option<Fft<f32>>,
    pending: Vec<f32>,
    out: Vec<f32>,
    scratch: Vec<f32>,
    to_trim: usize,
    frames_in: usize,
    ratio: f64,
}

impl std::fmt::Debug for StreamResampler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamResampler")
            .field("ratio", &self.ratio)
            .finish_non_exhaustive()
    }
}

impl StreamResampler {
    /// `None` only when rubato rejects the rate pair (a zero rate).
    pub fn new(rate_in: u32) -> Option<StreamResampler> {
        let ratio = f64::from(TARGET_RATE) / f64::from(rate_in.max(1));
        let inner = if rate_in == TARGET_RATE {
            None
        } else {
            Some(
                Fft::<f32>::new(
                    rate_in as usize,
                    TARGET_RATE as usize,
                    CHUNK,
                    1,
                    FixedSync::Input,
                )
                .ok()?,
            )
        };
        let (to_trim, scratch) = match &inner {
            Some(r) => (r.output_delay(), vec![0.0; r.output_frames_max()]),
            None => (0, Vec::new()),
        };
        Some(StreamResampler {
            inner,
            pending: Vec::new(),
            out: Vec::new(),
            scratch,
            to_trim,
            frames_in: 0,
            ratio,
        })
    }

    /// Frames produced so far (at 16 kHz).
    pub fn output_len(&self) -> usize {
        self.out.len()
    }

    pub fn push(&mut self, samples: &[f32]) {
        self.frames_in += samples.len();
        if self.inner.is_none() {
            self.out.extend_from_slice(samples);
            return;
        }
        self.pending.extend_from_slice(samples);
        while self
            .inner
            .as_ref()
            .is_some_and(|r| self.pending.len() >= r.input_frames_next())
        {
            let used = self.process(None);
            self.pending.drain(..used);
        }
    }

    /// Flushes the tail and returns exactly `frames_in × 16000 / rate_in` samples.
    pub fn finish(mut self) -> Vec<f32> {
        if self.inner.is_none() {
            return self.out;
        }
        let expected = (self.ratio * self.frames_in as f64).ceil() as usize;
        if !self.pending.is_empty() {
            let n = self.pending.len();
            self.process(Some(n));
            self.pending.clear();
        }
        let mut guard = 0;
        while self.out.len() < expected && guard < 64 {
            self.process(Some(0));
            guard += 1;
        }
        self.out.truncate(expected);
        self.out
    }

    /// Runs one chunk; returns the input frames consumed.
    fn process(&mut self, partial: Option<usize>) -> usize {
        let Some(r) = self.inner.as_mut() else {
            return 0;
        };
        let need = r.input_frames_next();
        if self.pending.len() < need {
            self.pending.resize(need, 0.0);
        }
        let indexing = Indexing {
            input_offset: 0,
            output_offset: 0,
            active_channels_mask: None,
            partial_len: partial,
        };
        let cap = self.scratch.len();
        let (Ok(input), Ok(mut output)) = (
            InterleavedSlice::new(&self.pending[..], 1, need),
            InterleavedSlice::new_mut(&mut self.scratch[..], 1, cap),
        ) else {
            return need;
        };
        let Ok((used, written)) = r.process_into_buffer(&input, &mut output, Some(&indexing))
        else {
            return need;
        };
        let skip = self.to_trim.min(written);
        self.to_trim -= skip;
        self.out.extend_from_slice(&self.scratch[skip..written]);
        used
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sine(rate: u32, hz: f32, secs: f32) -> Vec<f32> {
        let n = (rate as f32 * secs) as usize;
        (0..n)
            .map(|i| (2.0 * std::f32::consts::PI * hz * i as f32 / rate as f32).sin())
            .collect()
    }

    #[test]
    fn resampling_keeps_length_and_pitch() {
        let input = sine(44_100, 440.0, 1.5);
        let mut r = StreamResampler::new(44_100).unwrap();
        for chunk in input.chunks(777) {
            r.push(chunk);
        }
        let out = r.finish();
        assert_eq!(out.len(), 24_000);
        // An ideal 440 Hz sine at 16 kHz, away from the edges: same level, same phase.
        let ideal = sine(16_000, 440.0, 1.5);
        let (a, b) = (&out[2000..22000], &ideal[2000..22000]);
        let rms = |x: &[f32]| (x.iter().map(|v| v * v).sum::<f32>() / x.len() as f32).sqrt();
        assert!(
            (rms(a) / rms(b) - 1.0).abs() < 0.01,
            "level {} vs {}",
            rms(a),
            rms(b)
        );
        let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
        let corr = dot / (rms(a) * rms(b) * a.len() as f32);
        assert!(corr > 0.995, "correlation {corr}");
    }

    #[test]
    fn content_above_8khz_is_removed() {
        let input = sine(48_000, 12_000.0, 1.0);
        let mut r = StreamResampler::new(48_000).unwrap();
        r.push(&input);
        let out = r.finish();
        let rms = (out[1000..15000].iter().map(|x| x * x).sum::<f32>() / 14000.0).sqrt();
        assert!(rms < 0.01, "aliased energy rms {rms}");
    }
}
