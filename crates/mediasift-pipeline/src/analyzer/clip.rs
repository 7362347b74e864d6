//! CLIP image embedding and zero-shot labels of images and video frames. A video's embedding is
//! the normalised mean of its frames' (row 0 of the `.npy`; one row per frame after it) and its
//! labels are those of that mean.

use mediasift_media::Intake;
use mediasift_store::npy;
use serde_json::json;

use super::{Analyzer, FileContext, Output};
use crate::batch::Batcher;
use crate::models::ClipSet;

/// Preprocessed images in, normalised embeddings out: CLIP's inference thread.
pub type ClipBatcher = Batcher<Vec<f32>, Vec<f32>>;

/// Labels reported per file.
const TOP_LABELS: usize = 5;

#[derive(Debug, Clone)]
pub struct ClipAnalyzer {
    set: ClipSet,
    revision: String,
}

impl ClipAnalyzer {
    pub fn new(set: ClipSet) -> ClipAnalyzer {
        // The labels and their phrasing change the output as much as the weights do.
        let labels = &set.labels;
        let digest =
            blake3::hash(format!("{}\n{}", labels.prompt, labels.names.join("\n")).as_bytes())
                .to_hex();
        let revision = format!(
            "{}+labels.{}",
            super::model_revision(VERSION, set.model.provenance()),
            &digest[..8]
        );
        ClipAnalyzer { set, revision }
    }
}

const VERSION: &str = "1";

impl Analyzer for ClipAnalyzer {
    fn name(&self) -> &'static str {
        "clip"
    }

    fn version(&self) -> &'static str {
        VERSION
    }

    fn revision(&self) -> String {
        self.revision.clone()
    }

    fn analyze(&self, intake: &Intake, ctx: FileContext<'_>) -> Option<Output> {
        let model = &self.set.model;
        let p = model.provenance();
        let (inputs, times) = super::visual_inputs(intake, |rgb| model.preprocess(rgb))?;
        let vectors = match self.set.batcher.run(inputs) {
            Ok(v) if !v.is_empty() => v,
            Ok(_) => return Some(Output::value(json!({ "error": "no output", "model": p }))),
            Err(e) => return Some(Output::value(json!({ "error": e, "model": p }))),
        };
        let dims = vectors[0].len();
        let mut pooled = vec![0f32; dims];
        for v in &vectors {
            pooled.iter_mut().zip(v).for_each(|(a, b)| *a += b);
        }
        let norm = pooled.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-12);
        pooled.iter_mut().for_each(|x| *x /= norm);
        let probs = model.zero_shot(&pooled, &self.set.labels.vectors);
        let mut ranked: Vec<(usize, f32)> = probs.iter().copied().enumerate().collect();
        ranked.sort_by(|a, b| b.1.total_cmp(&a.1));
        let labels: Vec<_> = ranked
            .iter()
            .take(TOP_LABELS)
            .map(|&(i, prob)| json!({ "label": self.set.labels.names[i], "prob": super::round4(prob) }))
            .collect();
        let key = format!("embeddings/clip/{}/{}.npy", p.id, ctx.content_hash);
        let rows = if times.is_empty() {
            1
        } else {
            1 + vectors.len()
        };
        let mut data = pooled;
        if !times.is_empty() {
            for v in &vectors {
                data.extend_from_slice(v);
            }
        }
        Some(Output {
            value: json!({
                "key": key,
                "dims": dims,
                "labels": labels,
                "frames": times.len(),
                "model": p,
            }),
            phash: None,
            blobs: vec![(key, npy::encode_f32(rows, dims, &data))],
            also: Vec::new(),
        })
    }
}
