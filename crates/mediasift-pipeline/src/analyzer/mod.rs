//! Analyzers: each turns decoded content into one named, versioned JSON output. Every analyzer has
//! the same shape (a struct built from config, `NAME`/`VERSION`, `analyze`), so adding one means
//! adding a file here and a line in [`Analyzers::from_config`].

mod clip;
mod loudness;
mod metadata;
mod nsfw;
mod ocr;
mod phash;
mod tags;
mod text_embedding;
mod thumbnail;
mod transcript;

use mediasift_core::Config;
use mediasift_media::Intake;
use mediasift_store::AnalysisRow;

pub use clip::{ClipAnalyzer, ClipBatcher};
pub use loudness::Loudness;
pub use metadata::Metadata;
pub use nsfw::{Nsfw, NsfwBatcher};
pub use ocr::{Ocr, looks_like_document};
pub use phash::{PerceptualHash, hamming, phash64};
pub use tags::{ImageBatcher, ImageTags};
pub use text_embedding::TextEmbedding;
pub use thumbnail::Thumbnail;
pub use transcript::Transcript;

use crate::models::ModelSet;

/// What an analyzer produced for one file.
#[derive(Debug, Clone, PartialEq)]
pub struct Output {
    pub value: serde_json::Value,
    /// A 64-bit perceptual hash to index for near-duplicate lookup.
    pub phash: Option<u64>,
    /// Blobs to store (object key, bytes); written before the record that references them.
    pub blobs: Vec<(String, Vec<u8>)>,
    /// Further named analyses from the same run of the model (the image embedding that comes
    /// with the tags).
    pub also: Vec<(&'static str, serde_json::Value)>,
}

impl Output {
    pub fn value(value: serde_json::Value) -> Output {
        Output {
            value,
            phash: None,
            blobs: Vec::new(),
            also: Vec::new(),
        }
    }
}

/// Context shared by the analyzers of one file.
#[derive(Debug, Clone, Copy)]
pub struct FileContext<'a> {
    pub content_hash: &'a str,
    pub size_bytes: u64,
    /// Outputs of the analyzers that ran before this one (OCR text for the text embedding).
    pub earlier: &'a [AnalysisRow],
}

impl FileContext<'_> {
    pub fn earlier(&self, analyzer: &str) -> Option<&serde_json::Value> {
        self.earlier
            .iter()
            .find(|a| a.analyzer == analyzer)
            .map(|a| &a.output)
    }
}

/// One analysis step. `analyze` returns `None` when the analyzer does not apply to the content
/// (loudness of an image); analyzers never fail a file that decoded.
pub trait Analyzer: Send + Sync + std::fmt::Debug {
    fn name(&self) -> &'static str;
    /// Bumped whenever the output for the same input changes; stored results of older versions
    /// are recomputed on the next run.
    fn version(&self) -> &'static str;
    /// The code version plus the exact model weights, for analyzers that run a model: changing
    /// the model re-runs this analyzer (and only this one).
    fn revision(&self) -> String {
        self.version().to_string()
    }
    fn analyze(&self, intake: &Intake, ctx: FileContext<'_>) -> Option<Output>;
    /// Text derived elsewhere (a transcript, OCR text from another worker), for the analyzers
    /// that read text; `source` names where it came from.
    fn analyze_text(&self, _text: &str, _source: &str, _ctx: FileContext<'_>) -> Option<Output> {
        None
    }
}

/// Model inputs for what an image model sees: the image itself, or every sampled video frame
/// with its time (empty times for an image); `None` for other content.
pub fn visual_inputs(
    intake: &Intake,
    preprocess: impl Fn(&image::RgbImage) -> Vec<f32>,
) -> Option<(Vec<Vec<f32>>, Vec<f64>)> {
    match &intake.decoded {
        mediasift_media::Decoded::Image(img) => Some((vec![preprocess(&img.rgb)], Vec::new())),
        mediasift_media::Decoded::Video(v) if !v.frames.is_empty() => Some(
            v.frames
                .iter()
                .map(|f| (preprocess(&f.rgb), f.time_secs))
                .unzip(),
        ),
        _ => None,
    }
}

/// Scores in outputs are rounded to 4 decimals: finer digits are noise, and f32 → JSON would
/// otherwise print `0.1395999938`.
pub fn round4(v: f32) -> f64 {
    (f64::from(v) * 1e4).round() / 1e4
}

/// The revision of an analyzer that runs a model: code version + model id + weights checksum.
pub fn model_revision(version: &str, model: &mediasift_models::Provenance) -> String {
    format!(
        "{version}+{}@{}",
        model.id,
        &model.sha256[..12.min(model.sha256.len())]
    )
}

/// The enabled analyzers, in a fixed order.
#[derive(Debug)]
pub struct Analyzers {
    list: Vec<Box<dyn Analyzer>>,
    signature: String,
}

impl Analyzers {
    /// The analyzers the config enables, in dependency order (OCR and transcripts before the text embedding).
    pub fn from_config(cfg: &Config, models: &ModelSet) -> Analyzers {
        let a = cfg.analyzers();
        let mut list: Vec<Box<dyn Analyzer>> = Vec::new();
        if a.metadata {
            list.push(Box::new(Metadata));
        }
        if a.phash {
            list.push(Box::new(PerceptualHash));
        }
        if a.loudness {
            list.push(Box::new(Loudness::new(cfg.intake().silence_threshold_dbfs)));
        }
        if a.thumbnail {
            list.push(Box::new(Thumbnail::new(a.thumbnail_size)));
        }
        if let Some((net, batcher)) = &models.vision {
            list.push(Box::new(ImageTags::new(net.clone(), batcher.clone())));
        }
        if let Some((net, batcher)) = &models.nsfw {
            list.push(Box::new(Nsfw::new(net.clone(), batcher.clone())));
        }
        if let Some(set) = &models.clip {
            list.push(Box::new(ClipAnalyzer::new(set.clone())));
        }
        if let Some(engine) = &models.ocr {
            list.push(Box::new(Ocr::new(engine.clone(), cfg.ocr().mode)));
        }
        if let Some(whisper) = &models.whisper {
            list.push(Box::new(Transcript::new(
                whisper.clone(),
                models.vad.clone(),
                cfg.transcription(),
            )));
        }
        if let Some((embedder, batcher)) = &models.text {
            list.push(Box::new(TextEmbedding::new(
                embedder.clone(),
                batcher.clone(),
            )));
        }
        Analyzers::new(list)
    }

    pub fn new(list: Vec<Box<dyn Analyzer>>) -> Analyzers {
        let mut parts: Vec<String> = list
            .iter()
            .map(|a| format!("{}@{}", a.name(), a.version()))
            .collect();
        // The intake version covers sniffing/decoding changes that alter every result.
        parts.insert(0, format!("intake@{}", crate::INTAKE_VERSION));
        Analyzers {
            signature: parts.join(","),
            list,
        }
    }

    /// Names and versions of everything that shapes a file's record; a re-run skips a file only
    /// when its content hash and this signature are unchanged.
    pub fn signature(&self) -> &str {
        &self.signature
    }

    pub fn iter(&self) -> impl Iterator<Item = &dyn Analyzer> {
        self.list.iter().map(|a| a.as_ref())
    }
}
