//! MiniLM embeddings of text: text files, OCR text of images and transcripts of audio and
//! video. Vectors go to the object store as `.npy` float32, row 0 the pooled document vector
//! and one row per window after it.

use std::sync::Arc;

use mediasift_media::{Decoded, Intake};
use mediasift_models::{Provenance, TextEmbedder};
use mediasift_store::npy;
use serde_json::json;

use super::{Analyzer, FileContext, Output};
use crate::models::WindowBatcher;

#[derive(Debug, Clone)]
pub struct TextEmbedding {
    embedder: Arc<TextEmbedder>,
    batcher: WindowBatcher,
}

impl TextEmbedding {
    pub fn new(embedder: Arc<TextEmbedder>, batcher: WindowBatcher) -> TextEmbedding {
        TextEmbedding { embedder, batcher }
    }

    fn provenance(&self) -> &Provenance {
        self.embedder.provenance()
    }
}

impl Analyzer for TextEmbedding {
    fn name(&self) -> &'static str {
        "text_embedding"
    }

    fn version(&self) -> &'static str {
        "1"
    }

    fn revision(&self) -> String {
        super::model_revision(self.version(), self.provenance())
    }

    fn analyze(&self, intake: &Intake, ctx: FileContext<'_>) -> Option<Output> {
        let (text, source) = match &intake.decoded {
            Decoded::Text(t) => (t.text.as_str(), "text"),
            Decoded::Image(_) => (ctx.earlier("ocr")?.get("text")?.as_str()?, "ocr"),
            Decoded::Audio(_) | Decoded::Video(_) => (
                ctx.earlier("transcript")?.get("text")?.as_str()?,
                "transcript",
            ),
        };
        self.analyze_text(text, source, ctx)
    }

    fn analyze_text(&self, text: &str, source: &str, ctx: FileContext<'_>) -> Option<Output> {
        // Nothing to embed in blank text.
        text.split_whitespace().next()?;
        let p = self.provenance();
        let fail = |e: String| Output::value(json!({ "error": e, "model": p }));
        let windows = match self.embedder.chunk(text) {
            Ok(w) => w,
            Err(e) => return Some(fail(e.to_string())),
        };
        let vectors = match self.batcher.run(windows.clone()) {
            Ok(v) => v,
            Err(e) => return Some(fail(e)),
        };
        let pooled = TextEmbedder::pool(&windows, &vectors);
        let dims = pooled.len();
        let mut data = pooled;
        for v in &vectors {
            data.extend_from_slice(v);
        }
        let key = format!(
            "embeddings/text_embedding/{}/{}.npy",
            p.id, ctx.content_hash
        );
        let tokens: usize = windows.iter().map(|w| w.len() - 2).sum();
        Some(Output {
            value: json!({
                "key": key,
                "dims": dims,
                "chunks": vectors.len(),
                "tokens": tokens,
                "source": source,
                "layout": "row 0: pooled document vector; rows 1..: one per window",
                "model": p,
            }),
            phash: None,
            blobs: vec![(key, npy::encode_f32(vectors.len() + 1, dims, &data))],
            also: Vec::new(),
        })
    }
}
