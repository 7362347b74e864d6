//! Loudness of audio and of video soundtracks: EBU R128 integrated loudness, RMS and peak level,
//! and the share of the recording that is silent.

use ebur128::{EbuR128, Mode};
use mediasift_media::{Decoded, Intake, TARGET_RATE};
use serde_json::json;

use super::{Analyzer, FileContext, Output};

/// 20 ms frames decide what is silent.
const FRAME: usize = (TARGET_RATE as usize) / 50;

#[derive(Debug, Clone, Copy)]
pub struct Loudness {
    silence_threshold_dbfs: f64,
}

impl Loudness {
    pub fn new(silence_threshold_dbfs: f64) -> Loudness {
        Loudness {
            silence_threshold_dbfs,
        }
    }

    /// Measures mono samples at [`TARGET_RATE`].
    pub fn measure(&self, samples: &[f32]) -> serde_json::Value {
        let lufs = EbuR128::new(1, TARGET_RATE, Mode::I)
            .ok()
            .and_then(|mut m| {
                m.add_frames_f32(samples).ok()?;
                m.loudness_global().ok()
            })
            .filter(|l| l.is_finite());
        let sum_sq: f64 = samples.iter().map(|&s| f64::from(s) * f64::from(s)).sum();
        let rms = (sum_sq / samples.len().max(1) as f64).sqrt();
        let peak = samples.iter().fold(0f32, |m, s| m.max(s.abs()));
        let frames = samples
            .chunks(FRAME)
            .filter(|c| c.len() == FRAME || samples.len() < FRAME);
        let (mut silent, mut total) = (0usize, 0usize);
        for frame in frames {
            total += 1;
            let e = frame
                .iter()
                .map(|&s| f64::from(s) * f64::from(s))
                .sum::<f64>()
                / frame.len() as f64;
            if dbfs(e.sqrt()).is_none_or(|d| d < self.silence_threshold_dbfs) {
                silent += 1;
            }
        }
        json!({
            "integrated_lufs": lufs.map(round2),
            "rms_dbfs": dbfs(rms).map(round2),
            "peak_dbfs": dbfs(f64::from(peak)).map(round2),
            "silence_ratio": round2(silent as f64 / total.max(1) as f64),
        })
    }
}

/// Level in dB relative to full scale; `None` for digital silence.
fn dbfs(amplitude: f64) -> Option<f64> {
    (amplitude > 0.0).then(|| 20.0 * amplitude.log10())
}

fn round2(v: f64) -> f64 {
    (v * 100.0).round() / 100.0
}

impl Analyzer for Loudness {
    fn name(&self) -> &'static str {
        "loudness"
    }

    fn version(&self) -> &'static str {
        "1"
    }

    fn analyze(&self, intake: &Intake, _ctx: FileContext<'_>) -> Option<Output> {
        let samples = match &intake.decoded {
            Decoded::Audio(a) => &a.samples,
            Decoded::Video(v) => &v.audio.as_ref()?.samples,
            Decoded::Image(_) | Decoded::Text(_) => return None,
        };
        Some(Output::value(self.measure(samples)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn half_silent_tone_measures_as_such() {
        let n = TARGET_RATE as usize * 4;
        let samples: Vec<f32> = (0..n)
            .map(|i| {
                if i < n / 2 {
                    0.5 * (i as f32 * 2.0 * std::f32::consts::PI * 1000.0 / 16000.0).sin()
                } else {
                    0.0
                }
            })
            .collect();
        let v = Loudness::new(-50.0).measure(&samples);
        assert_eq!(v["silence_ratio"], 0.5);
        let peak = v["peak_dbfs"].as_f64().unwrap();
        assert!((peak - (-6.02)).abs() < 0.1, "peak {peak}");
        // A 1 kHz sine at -6 dBFS peak reads about -9 LUFS (gated loudness ignores the silence).
        let lufs = v["integrated_lufs"].as_f64().unwrap();
        assert!((lufs + 9.0).abs() < 1.0, "lufs {lufs}");
    }

    #[test]
    fn digital_silence_has_no_level() {
        let v = Loudness::new(-50.0).measure(&vec![0.0; 16000]);
        assert!(v["rms_dbfs"].is_null() && v["integrated_lufs"].is_null());
        assert_eq!(v["silence_ratio"], 1.0);
    }
}
