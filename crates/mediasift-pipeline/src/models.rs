//! Loading the models the config enables, once, at start-up. A model that cannot be found is a
//! start-up error naming it and how to install it, never a failure per file.

use std::sync::Arc;
use std::time::Duration;

use candle_core::Device;
use mediasift_core::{Config, OcrMode};
use mediasift_models::{
    Chunking, Clip, MobileNetV2, ModelError, ModelSpec, ModelStore, OpenNsfw, ResolvedModel,
    SileroVad, Tesseract, TextEmbedder, WhisperModel, catalog, select_device,
};

use crate::analyzer::{ImageBatcher, NsfwBatcher};
use crate::batch::Batcher;

/// Token windows in, unit vectors out: the text embedding's inference thread.
pub type WindowBatcher = Batcher<Vec<u32>, Vec<f32>>;

/// The loaded models, shared by every decode task.
#[derive(Debug, Default)]
pub struct ModelSet {
    pub text: Option<(Arc<TextEmbedder>, WindowBatcher)>,
    pub vision: Option<(Arc<MobileNetV2>, ImageBatcher)>,
    pub nsfw: Option<(Arc<OpenNsfw>, NsfwBatcher)>,
    pub ocr: Option<Tesseract>,
    pub whisper: Option<Arc<WhisperModel>>,
    pub vad: Option<Arc<SileroVad>>,
    pub clip: Option<ClipSet>,
}

/// CLIP with its inference thread and the embedded zero-shot labels.
#[derive(Debug, Clone)]
pub struct ClipSet {
    pub model: Arc<Clip>,
    pub batcher: crate::analyzer::ClipBatcher,
    pub labels: Arc<ZeroShotLabels>,
}

/// The zero-shot label list and its text embeddings (computed once, at load).
#[derive(Debug)]
pub struct ZeroShotLabels {
    pub names: Vec<String>,
    /// How each label was phrased (`a photo of {}`).
    pub prompt: String,
    pub vectors: Vec<Vec<f32>>,
}

impl ModelSet {
    /// Loads what `cfg` enables.
    pub fn load(cfg: &Config) -> Result<ModelSet, ModelError> {
        let mut set = ModelSet::default();
        if cfg.ocr().mode != OcrMode::Never {
            set.ocr = Some(Tesseract::new(
                &cfg.ocr().tesseract,
                &cfg.ocr().languages,
                cfg.ocr().timeout_secs,
            )?);
        }
        let b = cfg.batching();
        let max_wait = Duration::from_millis(b.max_wait_ms);
        if cfg.analyzers().tags {
            let net = load(cfg, &catalog::MOBILENET_V2, MobileNetV2::load)?;
            let model = net.clone();
            let batcher = Batcher::spawn(
                "image-tags",
                b.max_batch,
                max_wait,
                move |inputs: &[Vec<f32>]| model.forward(inputs),
            );
            set.vision = Some((net, batcher));
        }
        if cfg.analyzers().nsfw {
            let net = load(cfg, &catalog::OPEN_NSFW, OpenNsfw::load)?;
            let model = net.clone();
            let batcher = Batcher::spawn(
                "nsfw",
                b.max_batch,
                max_wait,
                move |inputs: &[Vec<f32>]| model.scores(inputs),
            );
            set.nsfw = Some((net, batcher));
        }
        if cfg.analyzers().transcript {
            let id = &cfg.transcription().model;
            let spec = catalog::by_id(id)
                .filter(|s| s.id.starts_with("whisper"))
                .ok_or_else(|| ModelError::NotInstalled {
                    id: id.clone(),
                    looked: "the model catalog (known: whisper-base, whisper-tiny.en)".into(),
                })?;
            set.whisper = Some(load(cfg, spec, WhisperModel::load)?);
            if cfg.transcription().vad {
                set.vad = Some(load(cfg, &catalog::SILERO_VAD, |m, _| SileroVad::load(m))?);
            }
        }
        if cfg.analyzers().clip {
            set.clip = load_clip(cfg, b.max_batch, max_wait)?;
        }
        if cfg.analyzers().text_embedding {
            let te = cfg.text_embedding();
            let spec = catalog::by_id(&te.model).ok_or_else(|| ModelError::NotInstalled {
                id: te.model.clone(),
                looked: "the model catalog (known: all-MiniLM-L6-v2)".into(),
            })?;
            let chunking = Chunking {
                max_tokens: te.max_tokens,
                overlap: te.overlap,
            };
            let embedder = load(cfg, spec, |m, d| TextEmbedder::load(m, d, chunking))?;
            let model = embedder.clone();
            let batcher = Batcher::spawn(
                "text-embedding",
                b.max_batch,
                max_wait,
                move |windows: &[Vec<u32>]| model.embed_windows(windows),
            );
            set.text = Some((embedder, batcher));
        }
        Ok(set)
    }
}

/// CLIP is optional: no registry carries its weights, so a missing model is one warning and
/// the other analyzers run; a model that is present but broken is an error.
fn load_clip(
    cfg: &Config,
    max_batch: usize,
    max_wait: Duration,
) -> Result<Option<ClipSet>, ModelError> {
    let c = cfg.clip();
    // A model id outside the catalog is a local checkpoint folder of that name (the id is
    // leaked once per process: specs are static).
    let spec = catalog::by_id(&c.model).copied().unwrap_or(ModelSpec {
        id: Box::leak(c.model.clone().into_boxed_str()),
        hf_repo: None,
        ..catalog::CLIP_VIT_B32
    });
    // A checkpoint without tokenizer.json uses the installed CLIP BPE tokenizer.
    let bpe = store(cfg)
        .resolve(&catalog::CLIP_TOKENIZER)
        .ok()
        .map(|m| m.dir.join("tokenizer.json"));
    let model = match load(cfg, &spec, |m, d| {
        Clip::load_with_tokenizer(m, d, bpe.as_deref())
    }) {
        Ok(m) => m,
        Err(ModelError::NotInstalled { .. }) => {
            tracing::warn!(model = %c.model, "clip: model not installed; CLIP embeddings and zero-shot labels are skipped (put a Hugging Face CLIP checkpoint in models_dir/{} or allow downloads)", c.model);
            return Ok(None);
        }
        Err(e) => return Err(e),
    };
    let prompts: Vec<String> = c.labels.iter().map(|l| c.prompt.replace("{}", l)).collect();
    let labels = Arc::new(ZeroShotLabels {
        names: c.labels.clone(),
        prompt: c.prompt.clone(),
        vectors: model.embed_texts(&prompts)?,
    });
    let m = model.clone();
    let batcher = Batcher::spawn("clip", max_batch, max_wait, move |inputs: &[Vec<f32>]| {
        m.embed_images(inputs)
    });
    Ok(Some(ClipSet {
        model,
        batcher,
        labels,
    }))
}

/// Resolves a model and loads it on the configured device.
fn load<M>(
    cfg: &Config,
    spec: &ModelSpec,
    load: impl FnOnce(&ResolvedModel, &Device) -> Result<M, ModelError>,
) -> Result<Arc<M>, ModelError> {
    let resolved = store(cfg).resolve(spec)?;
    let device = select_device(&cfg.models().device)?;
    let model = Arc::new(load(&resolved, &device)?);
    tracing::info!(model = %resolved.id, source = %resolved.source, dir = %resolved.dir.display(), "Loaded model");
    Ok(model)
}

/// The model store as configured.
pub fn store(cfg: &Config) -> ModelStore {
    ModelStore::new(
        cfg.models_dir(),
        cfg.models().paths.clone(),
        cfg.models().allow_download,
    )
}
