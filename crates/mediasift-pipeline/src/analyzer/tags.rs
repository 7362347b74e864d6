//! ImageNet-1k tags from MobileNetV2 (top 5 with softmax scores) and the 1280-d pooled feature
//! as an image embedding (`.npy` under `embeddings/image_embedding/mobilenet_v2/`). The tag text
//! makes images findable by words; the embedding finds similar images.

use std::sync::Arc;

use mediasift_media::Intake;
use mediasift_models::mobilenet::{preprocess, top_k};
use mediasift_models::{ImageOutput, MobileNetV2};
use mediasift_store::npy;
use serde_json::json;

use super::{Analyzer, FileContext, Output};
use crate::batch::Batcher;

/// Preprocessed inputs in, logits and features out: MobileNetV2's inference thread.
pub type ImageBatcher = Batcher<Vec<f32>, ImageOutput>;

#[derive(Debug, Clone)]
pub struct ImageTags {
    net: Arc<MobileNetV2>,
    batcher: ImageBatcher,
}

impl ImageTags {
    pub fn new(net: Arc<MobileNetV2>, batcher: ImageBatcher) -> ImageTags {
        ImageTags { net, batcher }
    }
}

impl Analyzer for ImageTags {
    fn name(&self) -> &'static str {
        "tags"
    }

    fn version(&self) -> &'static str {
        "1"
    }

    fn revision(&self) -> String {
        super::model_revision(self.version(), self.net.provenance())
    }

    fn analyze(&self, intake: &Intake, ctx: FileContext<'_>) -> Option<Output> {
        let p = self.net.provenance();
        let (inputs, times) = super::visual_inputs(intake, preprocess)?;
        let outs = match self.batcher.run(inputs) {
            Ok(out) if !out.is_empty() => out,
            Ok(_) => return Some(Output::value(json!({ "error": "no output", "model": p }))),
            Err(e) => return Some(Output::value(json!({ "error": e, "model": p }))),
        };
        if times.is_empty() {
            let out = &outs[0];
            let key = format!(
                "embeddings/image_embedding/{}/{}.npy",
                p.id, ctx.content_hash
            );
            let dims = out.feature.len();
            return Some(Output {
                value: json!(self.labels(&out.logits)),
                phash: None,
                blobs: vec![(key.clone(), npy::encode_f32(1, dims, &out.feature))],
                also: vec![(
                    "image_embedding",
                    json!({ "key": key, "dims": dims, "model": p }),
                )],
            });
        }
        // A video is tagged with what any of its frames shows: per class, the highest frame
        // logit; the timeline keeps each frame's own top 3 for alignment with the transcript.
        let classes = outs[0].logits.len();
        let best: Vec<f32> = (0..classes)
            .map(|c| {
                outs.iter()
                    .map(|o| o.logits[c])
                    .fold(f32::NEG_INFINITY, f32::max)
            })
            .collect();
        let timeline: Vec<_> = times
            .iter()
            .zip(&outs)
            .map(|(t, o)| json!({ "time_secs": t, "tags": self.labels(&o.logits).into_iter().take(3).collect::<Vec<_>>() }))
            .collect();
        Some(Output {
            value: json!(self.labels(&best)),
            phash: None,
            blobs: Vec::new(),
            also: vec![("frame_tags", json!({ "frames": timeline, "model": p }))],
        })
    }
}

impl ImageTags {
    /// Top 5 `{label, score}` of a logit vector.
    fn labels(&self, logits: &[f32]) -> Vec<serde_json::Value> {
        top_k(logits, 5)
            .into_iter()
            .map(|(i, score)| json!({ "label": self.net.class_name(i), "score": super::round4(score) }))
            .collect()
    }
}
