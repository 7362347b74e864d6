//! Sentence embeddings with sentence-transformers/all-MiniLM-L6-v2: BERT (`crate::bert`),
//! mean pooling over real tokens, L2 normalisation — the sentence-transformers recipe. Long text
//! is cut into overlapping windows of at most `max_tokens` (with [CLS]/[SEP]); each window gets a
//! vector, and the document a pooled one (token-weighted mean of the windows, normalised).

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use candle_transformers::models::bert::Config;
use tokenizers::Tokenizer;

use crate::bert::Bert;
use crate::{ModelError, Provenance, ResolvedModel};

/// How long text is cut.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Chunking {
    /// Tokens per window including [CLS] and [SEP] (sentence-transformers uses 256 for MiniLM).
    pub max_tokens: usize,
    /// Tokens shared by consecutive windows.
    pub overlap: usize,
}

impl Default for Chunking {
    fn default() -> Self {
        Chunking {
            max_tokens: 256,
            overlap: 32,
        }
    }
}

/// A document's vectors.
#[derive(Debug, Clone, PartialEq)]
pub struct EmbeddedText {
    /// One unit vector per window, in order.
    pub chunks: Vec<Vec<f32>>,
    /// Token-weighted mean of the windows, normalised.
    pub pooled: Vec<f32>,
    pub tokens: usize,
}

/// MiniLM loaded for inference.
pub struct TextEmbedder {
    model: Bert,
    tokenizer: Tokenizer,
    device: Device,
    chunking: Chunking,
    cls: u32,
    sep: u32,
    pad: u32,
    dims: usize,
    provenance: Provenance,
}

impl std::fmt::Debug for TextEmbedder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TextEmbedder")
            .field("provenance", &self.provenance)
            .field("chunking", &self.chunking)
            .finish_non_exhaustive()
    }
}

impl TextEmbedder {
    pub fn load(
        model: &ResolvedModel,
        device: &Device,
        chunking: Chunking,
    ) -> Result<TextEmbedder, ModelError> {
        let id = model.id.as_str();
        let config: Config = std::fs::read_to_string(model.dir.join("config.json"))
            .map_err(|e| ModelError::load(id, e))
            .and_then(|s| serde_json::from_str(&s).map_err(|e| ModelError::load(id, e)))?;
        let mut tokenizer = Tokenizer::from_file(model.dir.join("tokenizer.json"))
            .map_err(|e| ModelError::load(id, e))?;
        tokenizer.with_padding(None);
        tokenizer
            .with_truncation(None)
            .map_err(|e| ModelError::load(id, e))?;
        let token = |t: &str| {
            tokenizer
                .token_to_id(t)
                .ok_or_else(|| ModelError::load(id, format!("tokenizer lacks {t}")))
        };
        let (cls, sep, pad) = (token("[CLS]")?, token("[SEP]")?, token("[PAD]")?);
        let weights = model.dir.join("model.safetensors");
        // Read into memory rather than memory-mapped: no unsafe, and 90 MB is small.
        let tensors = candle_core::safetensors::load(&weights, device)
            .map_err(|e| ModelError::load(id, e))?;
        let vb = VarBuilder::from_tensors(tensors, DType::F32, device);
        let bert = Bert::load(vb, &config).map_err(|e| ModelError::load(id, e))?;
        if chunking.max_tokens < 8 || chunking.overlap >= chunking.max_tokens - 2 {
            return Err(ModelError::load(
                id,
                "chunking: need max_tokens ≥ 8 and overlap < max_tokens - 2",
            ));
        }
        Ok(TextEmbedder {
            model: bert,
            tokenizer,
            device: device.clone(),
            chunking,
            cls,
            sep,
            pad,
            dims: config.hidden_size,
            provenance: Provenance::of(model, device),
        })
    }

    pub fn dims(&self) -> usize {
        self.dims
    }

    pub fn provenance(&self) -> &Provenance {
        &self.provenance
    }

    /// Token windows of a text, each with [CLS] … [SEP]; empty text gives none.
    pub fn chunk(&self, text: &str) -> Result<Vec<Vec<u32>>, ModelError> {
        let enc = self
            .tokenizer
            .encode(text, false)
            .map_err(|e| ModelError::inference(&self.provenance.id, e))?;
        let ids = enc.get_ids();
        let body = self.chunking.max_tokens - 2;
        let step = body - self.chunking.overlap;
        let mut windows = Vec::new();
        let mut start = 0;
        while start < ids.len() {
            let end = (start + body).min(ids.len());
            let mut w = Vec::with_capacity(end - start + 2);
            w.push(self.cls);
            w.extend_from_slice(&ids[start..end]);
            w.push(self.sep);
            windows.push(w);
            if end == ids.len() {
                break;
            }
            start += step;
        }
        Ok(windows)
    }

    /// Embeds sentences as sentence-transformers does: each truncated to `max_tokens`.
    pub fn embed_sentences(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, ModelError> {
        let windows: Vec<Vec<u32>> = texts
            .iter()
            .map(|t| {
                let mut w = self
                    .chunk(t)?
                    .into_iter()
                    .next()
                    .unwrap_or_else(|| vec![self.cls, self.sep]);
                w.truncate(self.chunking.max_tokens);
                Ok(w)
            })
            .collect::<Result<_, ModelError>>()?;
        self.embed_windows(&windows)
    }

    /// One forward pass over a batch of token windows (padded to the longest), mean-pooled over
    /// real tokens and normalised.
    pub fn embed_windows(&self, windows: &[Vec<u32>]) -> Result<Vec<Vec<f32>>, ModelError> {
        if windows.is_empty() {
            return Ok(Vec::new());
        }
        let err = |e: candle_core::Error| ModelError::inference(&self.provenance.id, e);
        let len = windows.iter().map(Vec::len).max().unwrap_or(0);
        let mut ids = Vec::with_capacity(windows.len() * len);
        let mut mask = Vec::with_capacity(windows.len() * len);
        for w in windows {
            ids.extend(
                w.iter()
                    .copied()
                    .chain(std::iter::repeat_n(self.pad, len - w.len())),
            );
            mask.extend(
                std::iter::repeat_n(1u32, w.len()).chain(std::iter::repeat_n(0, len - w.len())),
            );
        }
        let shape = (windows.len(), len);
        let ids = Tensor::from_vec(ids, shape, &self.device).map_err(err)?;
        let mask = Tensor::from_vec(mask, shape, &self.device).map_err(err)?;
        let hidden = self.model.forward(&ids, &mask).map_err(err)?;
        let maskf = mask
            .to_dtype(DType::F32)
            .map_err(err)?
            .unsqueeze(2)
            .map_err(err)?;
        let summed = hidden
            .broadcast_mul(&maskf)
            .map_err(err)?
            .sum(1)
            .map_err(err)?;
        let counts = maskf.sum(1).map_err(err)?;
        let mean = summed.broadcast_div(&counts).map_err(err)?;
        let norm = mean
            .sqr()
            .map_err(err)?
            .sum_keepdim(1)
            .map_err(err)?
            .sqrt()
            .map_err(err)?;
        let unit = mean
            .broadcast_div(&norm.clamp(1e-12, f64::MAX).map_err(err)?)
            .map_err(err)?;
        unit.to_vec2::<f32>().map_err(err)
    }

    /// Pools window vectors into the document vector, weighting each by its token count.
    pub fn pool(windows: &[Vec<u32>], vectors: &[Vec<f32>]) -> Vec<f32> {
        let dims = vectors.first().map_or(0, Vec::len);
        let mut pooled = vec![0f32; dims];
        for (w, v) in windows.iter().zip(vectors) {
            let weight = w.len() as f32;
            for (p, x) in pooled.iter_mut().zip(v) {
                *p += weight * x;
            }
        }
        let norm = pooled.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-12);
        pooled.iter_mut().for_each(|x| *x /= norm);
        pooled
    }

    /// Chunks, embeds and pools one document (all windows in one batch of at most `max_batch`).
    pub fn embed_document(&self, text: &str, max_batch: usize) -> Result<EmbeddedText, ModelError> {
        let windows = self.chunk(text)?;
        let mut chunks = Vec::with_capacity(windows.len());
        for batch in windows.chunks(max_batch.max(1)) {
            chunks.extend(self.embed_windows(batch)?);
        }
        let pooled = Self::pool(&windows, &chunks);
        Ok(EmbeddedText {
            tokens: windows.iter().map(|w| w.len() - 2).sum(),
            chunks,
            pooled,
        })
    }
}
