//! Whisper speech recognition in candle: CTranslate2 import, log-mel features, a KV-cached
//! decoder and faster-whisper's transcription loop (timestamps, language, fallback, guards).

mod align;
pub mod ct2;
mod decode;
mod gemv;
#[cfg(all(
    target_arch = "x86_64",
    target_feature = "avx2",
    target_feature = "fma",
    target_feature = "f16c"
))]
mod gemv_simd;
mod kv_cache;
pub mod mel;
mod model;
mod step_attention;
mod tokens;
mod transcribe;
mod words;

use candle_core::{DType, Device};
use candle_nn::VarBuilder;
use serde_json::Value;
use tokenizers::Tokenizer;

pub use mel::{LogMel, MelExtractor};
pub use model::{Whisper, WhisperConfig};
pub use tokens::SpecialTokens;
pub use transcribe::{Segment, TranscribeOptions, Transcript};
pub use words::Word;

use crate::{ModelError, Provenance, ResolvedModel};

/// A loaded Whisper model with its tokenizer and feature extractor.
#[derive(Debug)]
pub struct WhisperModel {
    model: Whisper,
    tokenizer: Tokenizer,
    tokens: SpecialTokens,
    mel: MelExtractor,
    /// (decoder layer, head) pairs whose cross-attention follows word timing.
    alignment_heads: Vec<(usize, usize)>,
    device: Device,
    provenance: Provenance,
}

impl WhisperModel {
    /// Loads `model.safetensors`, `config.json` (Hugging Face names; `generation_config.json`
    /// supplies the token lists when `config.json` lacks them) and `tokenizer.json`.
    pub fn load(resolved: &ResolvedModel, device: &Device) -> Result<WhisperModel, ModelError> {
        let id = resolved.id.as_str();
        let read_json = |name: &str| -> Result<Value, ModelError> {
            let path = resolved.dir.join(name);
            let bytes = std::fs::read(&path).map_err(|source| ModelError::Io { path, source })?;
            serde_json::from_slice(&bytes).map_err(|e| ModelError::load(id, format!("{name}: {e}")))
        };
        let mut config = read_json("config.json")?;
        if config.get("suppress_tokens").is_none()
            && let Ok(generation) = read_json("generation_config.json")
            && let (Some(c), Some(g)) = (config.as_object_mut(), generation.as_object())
        {
            for (k, v) in g {
                c.entry(k.clone()).or_insert(v.clone());
            }
            if let Some(langs) = g.get("lang_to_id").and_then(Value::as_object) {
                let ids: Vec<Value> = langs.values().cloned().collect();
                c.insert("lang_ids".into(), Value::Array(ids));
            }
        }
        let dims: WhisperConfig = serde_json::from_value(config.clone())
            .map_err(|e| ModelError::load(id, format!("config.json: {e}")))?;
        let tokenizer = Tokenizer::from_file(resolved.dir.join("tokenizer.json"))
            .map_err(|e| ModelError::load(id, format!("tokenizer.json: {e}")))?;
        let tokens = SpecialTokens::new(&tokenizer, &config, dims.vocab_size)
            .map_err(|e| ModelError::load(id, e))?;
        let tensors =
            candle_core::safetensors::load(resolved.dir.join("model.safetensors"), device)
                .map_err(|e| ModelError::load(id, e))?;
        // CTranslate2 checkpoints store f16: decoder steps then read f16 copies (same values,
        // half the memory traffic of a step, which is bound by it).
        let half_weights = device.is_cpu()
            && tensors
                .get("model.decoder.embed_tokens.weight")
                .is_some_and(|t| t.dtype() == DType::F16);
        let vb = VarBuilder::from_tensors(tensors, DType::F32, device);
        let mel = MelExtractor::new(dims.num_mel_bins);
        let alignment_heads = alignment_heads(&config, &dims);
        let model = Whisper::load(vb, dims, half_weights).map_err(|e| ModelError::load(id, e))?;
        Ok(WhisperModel {
            model,
            tokenizer,
            tokens,
            mel,
            alignment_heads,
            device: device.clone(),
            provenance: Provenance::of(resolved, device),
        })
    }

    pub fn provenance(&self) -> &Provenance {
        &self.provenance
    }

    pub fn special_tokens(&self) -> &SpecialTokens {
        &self.tokens
    }

    /// Transcribes the speech of 16 kHz mono samples: voice activity detection first (no
    /// speech, no Whisper run and no text), Whisper over the speech joined, times mapped back.
    pub fn transcribe_speech(
        &self,
        samples: &[f32],
        vad: &crate::SileroVad,
        opts: &TranscribeOptions,
    ) -> Result<Transcript, ModelError> {
        let duration = samples.len() as f64 / mel::SAMPLE_RATE as f64;
        let regions = crate::vad::speech_regions(
            &vad.probabilities(samples),
            samples.len(),
            &Default::default(),
        );
        if regions.is_empty() {
            return Ok(Transcript {
                text: String::new(),
                language: opts.language.clone().unwrap_or_default(),
                language_probability: 0.0,
                duration,
                segments: Vec::new(),
            });
        }
        let speech = crate::vad::SpeechOnly::collect(samples, &regions);
        let mut t = self.transcribe(&speech.samples, opts)?;
        for s in &mut t.segments {
            s.start = speech.original_time(s.start, false);
            s.end = speech.original_time(s.end, true);
            for w in &mut s.words {
                w.start = speech.original_time(w.start, false);
                w.end = speech.original_time(w.end, true);
            }
        }
        t.duration = duration;
        Ok(t)
    }

    /// Transcribes 16 kHz mono samples.
    pub fn transcribe(
        &self,
        samples: &[f32],
        opts: &TranscribeOptions,
    ) -> Result<Transcript, ModelError> {
        let mel = self.mel.compute(samples, mel::HOP);
        self.transcribe_mel(&mel, opts)
            .map_err(|e| ModelError::inference(&self.provenance.id, e))
    }
}

/// The config's `alignment_heads` ((layer, head) pairs; CTranslate2 and Hugging Face
/// checkpoints carry them), or every head of the second half of the decoder, as Whisper does
/// for models without the list.
fn alignment_heads(config: &Value, dims: &WhisperConfig) -> Vec<(usize, usize)> {
    let listed: Vec<(usize, usize)> = config
        .get("alignment_heads")
        .and_then(Value::as_array)
        .map(|pairs| {
            pairs
                .iter()
                .filter_map(|p| {
                    let p = p.as_array()?;
                    let layer = usize::try_from(p.first()?.as_u64()?).ok()?;
                    let head = usize::try_from(p.get(1)?.as_u64()?).ok()?;
                    (layer < dims.decoder_layers && head < dims.decoder_attention_heads)
                        .then_some((layer, head))
                })
                .collect()
        })
        .unwrap_or_default();
    if !listed.is_empty() {
        return listed;
    }
    (dims.decoder_layers / 2..dims.decoder_layers)
        .flat_map(|l| (0..dims.decoder_attention_heads).map(move |h| (l, h)))
        .collect()
}
