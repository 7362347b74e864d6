//! ImageNet-1k tags from MobileNetV2 (top 5 with softmax scores) and the 1280-d pooled feature
//! as an image embedding (`.npy` under `embeddings/image_embedding/mobilenet_v2/`). The tag text
//! makes images findable by words; the embedding finds similar images.

use std::sync::Arc;

use mediasift_media::{Decoded, Intake};
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
        let Decoded::Image(img) = &intake.decoded else {
            return None;
        };
        let p = self.net.provenance();
        let out = match self.batcher.run(vec![preprocess(&img.rgb)]) {
            Ok(mut out) if !out.is_empty() => out.remove(0),
            Ok(_) => return Some(Output::value(json!({ "error": "no output", "model": p }))),
            Err(e) => return Some(Output::value(json!({ "error": e, "model": p }))),
        };
        let tags: Vec<_> = top_k(&out.logits, 5)
            .into_iter()
            .map(|(i, score)| json!({ "label": self.net.class_name(i), "score": (f64::from(score) * 1e4).round() / 1e4 }))
            .collect();
        let key = format!(
            "embeddings/image_embedding/{}/{}.npy",
            p.id, ctx.content_hash
        );
        let dims = out.feature.len();
        Some(Output {
            value: json!(tags),
            phash: None,
            blobs: vec![(key.clone(), npy::encode_f32(1, dims, &out.feature))],
            also: vec![(
                "image_embedding",
                json!({ "key": key, "dims": dims, "model": p }),
            )],
        })
    }
}
