//! NSFW score of images and of every sampled video frame (open_nsfw, 0 = safe, 1 = explicit).
//! A video's score is its highest frame score, with the per-frame timeline beside it.

use std::sync::Arc;

use mediasift_media::{Decoded, Intake};
use mediasift_models::OpenNsfw;
use mediasift_models::nsfw::preprocess;
use serde_json::json;

use super::{Analyzer, FileContext, Output};
use crate::batch::Batcher;

/// Preprocessed inputs in, NSFW probabilities out: open_nsfw's inference thread.
pub type NsfwBatcher = Batcher<Vec<f32>, f32>;

#[derive(Debug, Clone)]
pub struct Nsfw {
    net: Arc<OpenNsfw>,
    batcher: NsfwBatcher,
}

impl Nsfw {
    pub fn new(net: Arc<OpenNsfw>, batcher: NsfwBatcher) -> Nsfw {
        Nsfw { net, batcher }
    }
}

fn round4(v: f32) -> f64 {
    (f64::from(v) * 1e4).round() / 1e4
}

impl Analyzer for Nsfw {
    fn name(&self) -> &'static str {
        "nsfw"
    }

    fn version(&self) -> &'static str {
        "1"
    }

    fn revision(&self) -> String {
        super::model_revision(self.version(), self.net.provenance())
    }

    fn analyze(&self, intake: &Intake, _ctx: FileContext<'_>) -> Option<Output> {
        let p = self.net.provenance();
        let (inputs, times): (Vec<Vec<f32>>, Vec<f64>) = match &intake.decoded {
            Decoded::Image(img) => (vec![preprocess(&img.rgb)], Vec::new()),
            Decoded::Video(v) if !v.frames.is_empty() => v
                .frames
                .iter()
                .map(|f| (preprocess(&f.rgb), f.time_secs))
                .unzip(),
            _ => return None,
        };
        let scores = match self.batcher.run(inputs) {
            Ok(s) => s,
            Err(e) => return Some(Output::value(json!({ "error": e, "model": p }))),
        };
        let max = scores.iter().copied().fold(0f32, f32::max);
        let mut value = json!({ "score": round4(max), "model": p });
        if !times.is_empty() {
            value["frames"] = times
                .iter()
                .zip(&scores)
                .map(|(t, s)| json!({ "time_secs": t, "score": round4(*s) }))
                .collect();
        }
        Some(Output::value(value))
    }
}
