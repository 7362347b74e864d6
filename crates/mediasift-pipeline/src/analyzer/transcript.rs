//! Whisper transcripts of audio files and video soundtracks: text, language with its
//! probability, and timed segments with their confidence figures.

use std::sync::{Arc, Mutex};

use mediasift_media::{Decoded, Intake};
use mediasift_models::{TranscribeOptions, WhisperModel};
use serde_json::json;

use super::{Analyzer, FileContext, Output, round4};

#[derive(Debug, Clone)]
pub struct Transcript {
    model: Arc<WhisperModel>,
    options: TranscribeOptions,
    /// One transcription at a time: candle already spreads each one over every core, and
    /// overlapping runs would only fight over them.
    running: Arc<Mutex<()>>,
}

impl Transcript {
    pub fn new(model: Arc<WhisperModel>, language: &str) -> Transcript {
        Transcript {
            model,
            options: TranscribeOptions {
                language: (!language.is_empty()).then(|| language.to_string()),
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

    fn revision(&self) -> String {
        super::model_revision(self.version(), self.model.provenance())
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
            self.model.transcribe(samples, &self.options)
        };
        let t = match result {
            Ok(t) => t,
            Err(e) => return Some(Output::value(json!({ "error": e.to_string(), "model": p }))),
        };
        let segments: Vec<_> = t
            .segments
            .iter()
            .map(|s| {
                json!({
                    "start": round2(s.start),
                    "end": round2(s.end),
                    "text": s.text.trim(),
                    "avg_logprob": round4(s.avg_logprob as f32),
                    "no_speech_prob": round4(s.no_speech_prob),
                })
            })
            .collect();
        Some(Output::value(json!({
            "text": t.text,
            "language": t.language,
            "language_probability": round4(t.language_probability),
            "segments": segments,
            "model": p,
        })))
    }
}
