//! Whisper transcripts of audio files and video soundtracks: text, language with its
//! probability, and timed segments with their confidence figures.

use std::sync::{Arc, Mutex};

use mediasift_core::TranscriptionConfig;
use mediasift_media::{Decoded, Intake};
use mediasift_models::{SileroVad, TranscribeOptions, WhisperModel};
use serde_json::json;

use super::{Analyzer, FileContext, Output, round4};

#[derive(Debug, Clone)]
pub struct Transcript {
    model: Arc<WhisperModel>,
    vad: Option<Arc<SileroVad>>,
    options: TranscribeOptions,
    /// One transcription at a time: candle already spreads each one over every core, and
    /// overlapping runs would only fight over them.
    running: Arc<Mutex<()>>,
}

impl Transcript {
    pub fn new(
        model: Arc<WhisperModel>,
        vad: Option<Arc<SileroVad>>,
        cfg: &TranscriptionConfig,
    ) -> Transcript {
        Transcript {
            model,
            vad,
            options: TranscribeOptions {
                language: (!cfg.language.is_empty()).then(|| cfg.language.clone()),
                beam_size: cfg.beam_size,
                word_timestamps: cfg.word_timestamps,
                ..TranscribeOptions::default()
            },
            running: Arc::new(Mutex::new(())),
        }
    }
}

/// Times to the centisecond: Whisper's timestamps are 20 ms steps.
fn round2(v: f64) -> f64 {
    (v * 100.0).round() / 100.0
}

impl Analyzer for Transcript {
    fn name(&self) -> &'static str {
        "transcript"
    }

    fn version(&self) -> &'static str {
        "1"
    }

    /// Beam width, forced language, the VAD and word timestamps (which move the next window's
    /// start) change the result, so they are in the revision.
    fn revision(&self) -> String {
        format!(
            "{}+beam{}+words:{}+lang:{}+vad:{}",
            super::model_revision(self.version(), self.model.provenance()),
            self.options.beam_size,
            self.options.word_timestamps,
            self.options.language.as_deref().unwrap_or("auto"),
            self.vad
                .as_ref()
                .map_or("off", |v| v.provenance().sha256.get(..12).unwrap_or("?"))
        )
    }

    fn analyze(&self, intake: &Intake, _ctx: FileContext<'_>) -> Option<Output> {
        let samples = match &intake.decoded {
            Decoded::Audio(a) => &a.samples,
            Decoded::Video(v) => &v.audio.as_ref()?.samples,
            Decoded::Image(_) | Decoded::Text(_) => return None,
        };
        let p = self.model.provenance();
        let result = {
            let _one_at_a_time = self.running.lock().unwrap_or_else(|e| e.into_inner());
            let started = std::time::Instant::now();
            let result = match &self.vad {
                Some(vad) => self.model.transcribe_speech(samples, vad, &self.options),
                None => self.model.transcribe(samples, &self.options),
            };
            // One file per pass (no cross-file batching for Whisper yet).
            let m = crate::metrics::inference();
            m.seconds
                .with_label_values(&["whisper"])
                .observe(started.elapsed().as_secs_f64());
            m.batch_size.with_label_values(&["whisper"]).observe(1.0);
            result
        };
        let t = match result {
            Ok(t) => t,
            Err(e) => return Some(Output::value(json!({ "error": e.to_string(), "model": p }))),
        };
        // Whisper can emit timestamps past the end of a short clip; a segment that starts
        // after the audio ends is text the model made up.
        let kept: Vec<_> = t.segments.iter().filter(|s| s.start < t.duration).collect();
        let text = kept.iter().map(|s| s.text.as_str()).collect::<String>();
        let segments: Vec<_> = kept
            .iter()
            .map(|s| {
                let mut segment = json!({
                    "start": round2(s.start),
                    "end": round2(s.end.min(t.duration)),
                    "text": s.text.trim(),
                    "avg_logprob": round4(s.avg_logprob as f32),
                    "no_speech_prob": round4(s.no_speech_prob),
                });
                if self.options.word_timestamps {
                    segment["words"] = s
                        .words
                        .iter()
                        .filter(|w| w.start < t.duration)
                        .map(|w| {
                            json!({
                                "word": w.word.trim(),
                                "start": round2(w.start),
                                "end": round2(w.end.min(t.duration)),
                                "probability": round4(w.probability as f32),
                            })
                        })
                        .collect();
                }
                segment
            })
            .collect();
        Some(Output::value(json!({
            "text": text.trim(),
            // No speech, no language.
            "language": (!t.language.is_empty()).then_some(&t.language),
            "language_probability": (!t.language.is_empty())
                .then(|| round4(t.language_probability)),
            "segments": segments,
            "model": p,
        })))
    }
}
