//! NSFW score of images and of every sampled video frame (open_nsfw, 0 = safe, 1 = explicit).
//! A video's score is its highest frame score, with the per-frame timeline beside it.

use std::sync::Arc;

use mediasift_media::Intake;
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
        let (inputs, times) = super::visual_inputs(intake, preprocess)?;
        let scores = match self.batcher.run(inputs) {
            Ok(s) => s,
            Err(e) => return Some(Output::value(json!({ "error": e, "model": p }))),
        };
        let max = scores.iter().copied().fold(0f32, f32::max);
        let mut value = json!({ "score": super::round4(max), "model": p });
        if !times.is_empty() {
            value["frames"] = times
                .iter()
                .zip(&scores)
                .map(|(t, s)| json!({ "time_secs": t, "score": super::round4(*s) }))
                .collect();
        }
        Some(Output::value(value))
    }
}
