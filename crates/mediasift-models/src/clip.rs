//! CLIP (any Hugging Face CLIP checkpoint with quick-GELU, `openai/clip-vit-base-patch32` by
//! default): image and text embeddings in one space, and zero-shot labels. The text tower is
//! candle-transformers' CLIP; the vision tower is [`crate::clip_vision_cpu`] for f32 on the CPU
//! (fused, one group of images per thread) and candle-transformers' elsewhere. This module reads the Hugging Face `config.json`, preprocesses
//! images as `CLIPImageProcessor` does (shortest side to the input size, bicubic; center crop;
//! CLIP mean/std), tokenizes with the checkpoint's `tokenizer.json` and L2-normalises.
//!
//! No registry carries CLIP weights, so the tests run this code on small random-weight
//! checkpoints written by [`write_random_checkpoint`].

use std::path::Path;

use candle_core::{DType, Device, IndexOp, Tensor};
use candle_nn::{Linear, Module, VarBuilder};
use candle_transformers::models::clip::{
    ClipConfig, ClipModel,
    text_model::{Activation, ClipTextConfig, ClipTextTransformer},
    vision_model::{ClipVisionConfig, ClipVisionTransformer},
};
use serde::Deserialize;
use tokenizers::Tokenizer;

use crate::clip_vision_cpu::ClipVisionCpu;
use crate::{ModelError, Provenance, ResolvedModel};

// CLIPImageProcessor's constants, as published (more digits than f32 keeps).
#[allow(clippy::excessive_precision)]
pub const MEAN: [f32; 3] = [0.481_454_66, 0.457_827_5, 0.408_210_73];
#[allow(clippy::excessive_precision)]
pub const STD: [f32; 3] = [0.268_629_54, 0.261_302_58, 0.275_777_11];

/// The parts of a Hugging Face `CLIPConfig` the network needs; missing fields take
/// `openai/clip-vit-base-patch32`'s values.
#[derive(Debug, Clone, Deserialize)]
pub struct HfClipConfig {
    #[serde(default = "default_projection")]
    pub projection_dim: usize,
    #[serde(default = "default_logit_scale")]
    pub logit_scale_init_value: f32,
    #[serde(default)]
    pub text_config: HfTextConfig,
    #[serde(default)]
    pub vision_config: HfVisionConfig,
}

fn default_projection() -> usize {
    512
}
fn default_logit_scale() -> f32 {
    2.6592
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct HfTextConfig {
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub max_position_embeddings: usize,
    pub hidden_act: String,
}

impl Default for HfTextConfig {
    fn default() -> Self {
        HfTextConfig {
            vocab_size: 49408,
            hidden_size: 512,
            intermediate_size: 2048,
            num_hidden_layers: 12,
            num_attention_heads: 8,
            max_position_embeddings: 77,
            hidden_act: "quick_gelu".into(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct HfVisionConfig {
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub image_size: usize,
    pub patch_size: usize,
    pub num_channels: usize,
    pub hidden_act: String,
}

impl Default for HfVisionConfig {
    fn default() -> Self {
        HfVisionConfig {
            hidden_size: 768,
            intermediate_size: 3072,
            num_hidden_layers: 12,
            num_attention_heads: 12,
            image_size: 224,
            patch_size: 32,
            num_channels: 3,
            hidden_act: "quick_gelu".into(),
        }
    }
}

impl HfClipConfig {
    /// `openai/clip-vit-base-patch32`.
    pub fn vit_base_patch32() -> HfClipConfig {
        HfClipConfig {
            projection_dim: default_projection(),
            logit_scale_init_value: default_logit_scale(),
            text_config: HfTextConfig::default(),
            vision_config: HfVisionConfig::default(),
        }
    }

    pub fn to_candle(&self, id: &str) -> Result<ClipConfig, ModelError> {
        for act in [&self.text_config.hidden_act, &self.vision_config.hidden_act] {
            if act != "quick_gelu" {
                return Err(ModelError::load(
                    id,
                    format!("activation {act:?} is not supported (quick_gelu only)"),
                ));
            }
        }
        let t = &self.text_config;
        let v = &self.vision_config;
        Ok(ClipConfig {
            text_config: ClipTextConfig {
                vocab_size: t.vocab_size,
                embed_dim: t.hidden_size,
                activation: Activation::QuickGelu,
                intermediate_size: t.intermediate_size,
                max_position_embeddings: t.max_position_embeddings,
                pad_with: None,
                num_hidden_layers: t.num_hidden_layers,
                num_attention_heads: t.num_attention_heads,
                projection_dim: self.projection_dim,
            },
            vision_config: ClipVisionConfig {
                embed_dim: v.hidden_size,
                activation: Activation::QuickGelu,
                intermediate_size: v.intermediate_size,
                num_hidden_layers: v.num_hidden_layers,
                num_attention_heads: v.num_attention_heads,
                projection_dim: self.projection_dim,
                num_channels: v.num_channels,
                image_size: v.image_size,
                patch_size: v.patch_size,
            },
            logit_scale_init_value: self.logit_scale_init_value,
            image_size: v.image_size,
        })
    }
}

/// The image tower and its projection.
enum Vision {
    Cpu(Box<ClipVisionCpu>),
    Candle {
        model: ClipVisionTransformer,
        projection: Linear,
    },
}

/// The two towers and their projections.
struct Towers {
    text: ClipTextTransformer,
    text_projection: Linear,
    vision: Vision,
}

impl std::fmt::Debug for Towers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Towers")
            .field("fused_cpu_vision", &matches!(self.vision, Vision::Cpu(_)))
            .finish_non_exhaustive()
    }
}

impl Towers {
    /// From a checkpoint's root: the fused CPU vision tower for f32 on the CPU.
    fn new(vb: &VarBuilder, c: &ClipConfig) -> candle_core::Result<Towers> {
        let vision = if vb.device().is_cpu() && vb.dtype() == DType::F32 {
            Vision::Cpu(Box::new(ClipVisionCpu::load(vb, &c.vision_config)?))
        } else {
            Vision::Candle {
                model: ClipVisionTransformer::new(vb.pp("vision_model"), &c.vision_config)?,
                projection: candle_nn::linear_no_bias(
                    c.vision_config.embed_dim,
                    c.vision_config.projection_dim,
                    vb.pp("visual_projection"),
                )?,
            }
        };
        Ok(Towers {
            text: ClipTextTransformer::new(vb.pp("text_model"), &c.text_config)?,
            text_projection: candle_nn::linear_no_bias(
                c.text_config.embed_dim,
                c.text_config.projection_dim,
                vb.pp("text_projection"),
            )?,
            vision,
        })
    }

    fn text_features(&self, ids: &Tensor) -> candle_core::Result<Tensor> {
        self.text_projection.forward(&self.text.forward(ids)?)
    }
}

/// A loaded CLIP model.
#[derive(Debug)]
pub struct Clip {
    towers: Towers,
    tokenizer: Tokenizer,
    image_size: usize,
    max_tokens: usize,
    /// exp(logit_scale): the temperature of zero-shot probabilities.
    scale: f32,
    dims: usize,
    device: Device,
    provenance: Provenance,
}

impl Clip {
    /// Loads `config.json`, `model.safetensors` and `tokenizer.json` from a resolved model.
    pub fn load(model: &ResolvedModel, device: &Device) -> Result<Clip, ModelError> {
        Clip::load_with_tokenizer(model, device, None)
    }

    /// As `load`, with `fallback` as the tokenizer when the checkpoint has no `tokenizer.json`
    /// (the CLIP BPE tokenizer `models fetch` installs).
    pub fn load_with_tokenizer(
        model: &ResolvedModel,
        device: &Device,
        fallback: Option<&Path>,
    ) -> Result<Clip, ModelError> {
        let id = model.id.as_str();
        let hf: HfClipConfig = std::fs::read_to_string(model.dir.join("config.json"))
            .map_err(|e| ModelError::load(id, e))
            .and_then(|s| serde_json::from_str(&s).map_err(|e| ModelError::load(id, e)))?;
        let config = hf.to_candle(id)?;
        let weights = model.dir.join("model.safetensors");
        // Read into memory, not memory-mapped (no unsafe).
        let tensors = candle_core::safetensors::load(&weights, device)
            .map_err(|e| ModelError::load(id, e))?;
        let vb = VarBuilder::from_tensors(tensors, DType::F32, device);
        let towers = Towers::new(&vb, &config).map_err(|e| ModelError::load(id, e))?;
        let logit_scale = if vb.contains_tensor("logit_scale") {
            vb.get(&[], "logit_scale")
                .and_then(|t| t.to_scalar::<f32>())
                .map_err(|e| ModelError::load(id, e))?
        } else {
            config.logit_scale_init_value
        };
        let own = model.dir.join("tokenizer.json");
        let tokenizer_file = match fallback {
            Some(f) if !own.exists() => f.to_path_buf(),
            None if !own.exists() => {
                return Err(ModelError::load(
                    id,
                    format!(
                        "no tokenizer.json in {} and the CLIP BPE tokenizer is not installed \
                         (run `mediasift models fetch`)",
                        model.dir.display()
                    ),
                ));
            }
            _ => own,
        };
        let mut tokenizer = Tokenizer::from_file(&tokenizer_file)
            .map_err(|e| ModelError::load(id, format!("{}: {e}", tokenizer_file.display())))?;
        tokenizer.with_padding(None);
        let _ = tokenizer.with_truncation(None);
        Ok(Clip {
            towers,
            tokenizer,
            image_size: config.image_size,
            max_tokens: config.text_config.max_position_embeddings,
            scale: logit_scale.exp(),
            dims: hf.projection_dim,
            device: device.clone(),
            provenance: Provenance::of(model, device),
        })
    }

    pub fn provenance(&self) -> &Provenance {
        &self.provenance
    }

    /// Embedding dimensions (the projection size).
    pub fn dims(&self) -> usize {
        self.dims
    }

    pub fn image_size(&self) -> usize {
        self.image_size
    }

    /// An RGB image to the normalised CHW model input.
    pub fn preprocess(&self, rgb: &image::RgbImage) -> Vec<f32> {
        preprocess(rgb, self.image_size as u32)
    }

    /// L2-normalised image embeddings, one per preprocessed input.
    pub fn embed_images(&self, inputs: &[Vec<f32>]) -> Result<Vec<Vec<f32>>, ModelError> {
        let err = |e: candle_core::Error| ModelError::inference(&self.provenance.id, e);
        if inputs.is_empty() {
            return Ok(Vec::new());
        }
        let side = self.image_size;
        if let Some(bad) = inputs.iter().find(|i| i.len() != 3 * side * side) {
            return Err(err(candle_core::Error::Msg(format!(
                "input of {} values, expected 3×{side}×{side}",
                bad.len()
            ))));
        }
        let flat: Vec<f32> = inputs.iter().flatten().copied().collect();
        match &self.towers.vision {
            Vision::Cpu(vision) => Ok(vision
                .features(&flat, inputs.len())
                .into_iter()
                .map(normalized)
                .collect()),
            Vision::Candle { model, projection } => {
                let x = Tensor::from_vec(flat, (inputs.len(), 3, side, side), &self.device)
                    .map_err(err)?;
                let features = projection
                    .forward(&model.forward(&x).map_err(err)?)
                    .map_err(err)?;
                normalized_rows(&features).map_err(err)
            }
        }
    }

    /// L2-normalised text embeddings (each text on its own: no padding to get wrong).
    pub fn embed_texts(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, ModelError> {
        let err = |e: candle_core::Error| ModelError::inference(&self.provenance.id, e);
        let mut out = Vec::with_capacity(texts.len());
        for text in texts {
            let ids = crate::clip_tokenizer::encode(&self.tokenizer, text, self.max_tokens)
                .map_err(|e| ModelError::inference(&self.provenance.id, e))?;
            let x = Tensor::new(ids.as_slice(), &self.device)
                .and_then(|t| t.unsqueeze(0))
                .map_err(err)?;
            let features = self.towers.text_features(&x).map_err(err)?;
            out.extend(normalized_rows(&features).map_err(err)?);
        }
        Ok(out)
    }

    /// Softmax over `labels` (normalised text embeddings) of the scaled cosine similarities
    /// with one normalised image embedding.
    pub fn zero_shot(&self, image: &[f32], labels: &[Vec<f32>]) -> Vec<f32> {
        let logits: Vec<f32> = labels
            .iter()
            .map(|l| self.scale * l.iter().zip(image).map(|(a, b)| a * b).sum::<f32>())
            .collect();
        let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let exp: Vec<f32> = logits.iter().map(|l| (l - max).exp()).collect();
        let sum: f32 = exp.iter().sum();
        exp.iter().map(|e| e / sum).collect()
    }
}

/// `v / ‖v‖` (zero stays zero).
fn normalized(mut v: Vec<f32>) -> Vec<f32> {
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-12);
    v.iter_mut().for_each(|x| *x /= norm);
    v
}

fn normalized_rows(t: &Tensor) -> candle_core::Result<Vec<Vec<f32>>> {
    let rows = t.dim(0)?;
    let mut out = Vec::with_capacity(rows);
    for r in 0..rows {
        out.push(normalized(t.i(r)?.to_vec1::<f32>()?));
    }
    Ok(out)
}

/// `CLIPImageProcessor`'s steps, to the bit (tested against transformers): shortest side to
/// `size` (Pillow bicubic, long side truncated), center crop `size`², scale to 0..1, normalise
/// with CLIP's mean and std; CHW.
pub fn preprocess(rgb: &image::RgbImage, size: u32) -> Vec<f32> {
    normalise(&center_crop(rgb, size))
}

/// The `size`×`size` crop `CLIPImageProcessor` takes, before scaling and normalising.
pub fn center_crop(rgb: &image::RgbImage, size: u32) -> image::RgbImage {
    crate::imageprep::resize_center_crop(
        rgb,
        size,
        size,
        crate::imageprep::Filter::Bicubic,
        crate::imageprep::LongSide::Truncate,
    )
}

/// A square crop to the normalised CHW input.
pub fn normalise(crop: &image::RgbImage) -> Vec<f32> {
    crate::imageprep::normalize_chw(crop, MEAN, STD)
}

impl Clip {
    /// A model of `config`'s architecture with random weights and a word-level tokenizer of
    /// `words`: for benchmarks of the real architecture where its weights are not available.
    pub fn with_random_weights(config: &HfClipConfig, words: &[&str]) -> Result<Clip, ModelError> {
        let id = "random-clip";
        let candle = config.to_candle(id)?;
        let vb = random_varmap_builder(&candle).map_err(|e| ModelError::load(id, e))?;
        let towers = Towers::new(&vb, &candle).map_err(|e| ModelError::load(id, e))?;
        let tokenizer = Tokenizer::from_bytes(random_tokenizer_json(words).to_string())
            .map_err(|e| ModelError::load(id, e))?;
        Ok(Clip {
            towers,
            tokenizer,
            image_size: candle.image_size,
            max_tokens: candle.text_config.max_position_embeddings,
            scale: config.logit_scale_init_value.exp(),
            dims: config.projection_dim,
            device: Device::Cpu,
            provenance: Provenance {
                id: id.into(),
                sha256: String::new(),
                dtype: "f32".into(),
                device: "cpu".into(),
            },
        })
    }
}

/// Fills `varmap` with random weights of every CLIP parameter, the class embedding included
/// (candle's CLIP draws a fresh one at each load when a checkpoint lacks it).
fn random_weights(varmap: &candle_nn::VarMap, c: &ClipConfig) -> candle_core::Result<()> {
    let vb = VarBuilder::from_varmap(varmap, DType::F32, &Device::Cpu);
    vb.pp("vision_model").pp("embeddings").get_with_hints(
        c.vision_config.embed_dim,
        "class_embedding",
        candle_nn::Init::Randn {
            mean: 0.0,
            stdev: 1.0,
        },
    )?;
    ClipModel::new(vb, c).map(drop)
}

/// A builder over a fresh random-weight varmap of `c` (the builder holds the varmap).
fn random_varmap_builder(c: &ClipConfig) -> candle_core::Result<VarBuilder<'static>> {
    let varmap = candle_nn::VarMap::new();
    random_weights(&varmap, c)?;
    Ok(VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu))
}

/// A word-level `tokenizer.json`: <unk>, the words, then <|startoftext|> and <|endoftext|>
/// (the highest id: CLIP's text pooling reads the position of the largest id).
fn random_tokenizer_json(words: &[&str]) -> serde_json::Value {
    let mut vocab = serde_json::Map::new();
    vocab.insert("<unk>".into(), 0.into());
    for (i, w) in words.iter().enumerate() {
        vocab.insert(w.to_lowercase(), (i + 1).into());
    }
    let (bos, eos) = (words.len() + 1, words.len() + 2);
    vocab.insert("<|startoftext|>".into(), bos.into());
    vocab.insert("<|endoftext|>".into(), eos.into());
    let special = |token: &str, id: usize| {
        serde_json::json!({ "id": id, "content": token, "single_word": false, "lstrip": false,
            "rstrip": false, "normalized": false, "special": true })
    };
    serde_json::json!({
        "version": "1.0",
        "truncation": null,
        "padding": null,
        "added_tokens": [special("<|startoftext|>", bos), special("<|endoftext|>", eos)],
        "normalizer": { "type": "Lowercase" },
        "pre_tokenizer": { "type": "Whitespace" },
        "post_processor": {
            "type": "TemplateProcessing",
            "single": [
                { "SpecialToken": { "id": "<|startoftext|>", "type_id": 0 } },
                { "Sequence": { "id": "A", "type_id": 0 } },
                { "SpecialToken": { "id": "<|endoftext|>", "type_id": 0 } }
            ],
            "pair": [
                { "Sequence": { "id": "A", "type_id": 0 } },
                { "Sequence": { "id": "B", "type_id": 1 } }
            ],
            "special_tokens": {
                "<|startoftext|>": { "id": "<|startoftext|>", "ids": [bos], "tokens": ["<|startoftext|>"] },
                "<|endoftext|>": { "id": "<|endoftext|>", "ids": [eos], "tokens": ["<|endoftext|>"] }
            }
        },
        "decoder": null,
        "model": { "type": "WordLevel", "vocab": vocab, "unk_token": "<unk>" }
    })
}

/// Writes a small random-weight CLIP checkpoint (`config.json`, `model.safetensors`,
/// `tokenizer.json` with a word-level vocabulary of `words`) to `dir`, in the Hugging Face
/// layout: the real loading, preprocessing and inference path runs on it.
pub fn write_random_checkpoint(dir: &Path, words: &[&str]) -> Result<(), ModelError> {
    let vocab_size = words.len() + 3;
    let config = serde_json::json!({
        "architectures": ["CLIPModel"],
        "model_type": "clip",
        "projection_dim": 32,
        "logit_scale_init_value": 2.6592,
        "text_config": {
            "vocab_size": vocab_size, "hidden_size": 48, "intermediate_size": 96,
            "num_hidden_layers": 2, "num_attention_heads": 4, "max_position_embeddings": 16,
            "hidden_act": "quick_gelu"
        },
        "vision_config": {
            "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
            "num_attention_heads": 4, "image_size": 32, "patch_size": 8, "num_channels": 3,
            "hidden_act": "quick_gelu"
        }
    });
    write_random_checkpoint_of(dir, &config, words)
}

/// Writes a random-weight checkpoint of any Hugging Face CLIP `config` (e.g. `{}` for the
/// ViT-B/32 defaults) with a word-level tokenizer of `words`.
pub fn write_random_checkpoint_of(
    dir: &Path,
    config: &serde_json::Value,
    words: &[&str],
) -> Result<(), ModelError> {
    let id = "random-clip";
    std::fs::create_dir_all(dir).map_err(|e| ModelError::load(id, e))?;
    let tokenizer = random_tokenizer_json(words);
    let hf: HfClipConfig =
        serde_json::from_value(config.clone()).map_err(|e| ModelError::load(id, e))?;
    let varmap = candle_nn::VarMap::new();
    random_weights(&varmap, &hf.to_candle(id)?).map_err(|e| ModelError::load(id, e))?;
    let write = |name: &str, text: String| {
        std::fs::write(dir.join(name), text).map_err(|e| ModelError::load(id, e))
    };
    write("config.json", config.to_string())?;
    write("tokenizer.json", tokenizer.to_string())?;
    varmap
        .save(dir.join("model.safetensors"))
        .map_err(|e| ModelError::load(id, e))
}
