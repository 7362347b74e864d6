//! Layered configuration: built-in defaults → `config/mediasift.toml` (when present in the working
//! directory) → `--config FILE` → `MEDIASIFT__SECTION__KEY` environment variables. Unknown keys
//! are errors; values are validated once, here, into [`Config`].

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::{Deserialize, Serialize};

pub use crate::dist_config::{ClipConfig, DistributedConfig, FusionConfig, ModerationConfig};

/// The default config file looked up relative to the working directory.
pub const DEFAULT_CONFIG_FILE: &str = "config/mediasift.toml";

/// The configuration as written by the user, before validation.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawConfig {
    pub intake: IntakeConfig,
    pub video: VideoConfig,
    pub analyzers: AnalyzersConfig,
    pub duplicates: DuplicatesConfig,
    pub pipeline: PipelineConfig,
    pub store: StoreConfig,
    pub models: ModelsConfig,
    pub text_embedding: TextEmbeddingConfig,
    pub transcription: TranscriptionConfig,
    pub ocr: OcrConfig,
    pub batching: BatchingConfig,
    pub distributed: DistributedConfig,
    pub moderation: ModerationConfig,
    pub fusion: FusionConfig,
    pub clip: ClipConfig,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IntakeConfig {
    /// Files larger than this are rejected before being read.
    pub max_file_bytes: u64,
    /// Images whose header declares more pixels than this are rejected before decoding.
    pub max_pixels: u64,
    /// Audio/video longer than this is rejected (from the header, or while decoding).
    pub max_duration_secs: f64,
    /// A decoder still busy after this long is abandoned and the file fails with `timeout`.
    pub decode_timeout_secs: f64,
    /// Dynamic range below which a 20 ms audio frame counts as silent, in dBFS.
    pub silence_threshold_dbfs: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct VideoConfig {
    /// Sample one frame every this many seconds.
    pub frame_interval_secs: f64,
    /// Never sample more frames than this from one video.
    pub max_frames: u32,
    /// Also take a frame at each scene change (ffmpeg's scene score above `scene_threshold`).
    pub scene_detection: bool,
    pub scene_threshold: f64,
    /// ffmpeg and ffprobe executables (a name on PATH or a path).
    pub ffmpeg: String,
    pub ffprobe: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AnalyzersConfig {
    pub metadata: bool,
    pub phash: bool,
    pub loudness: bool,
    pub thumbnail: bool,
    /// Longest side of stored thumbnails, in pixels.
    pub thumbnail_size: u32,
    /// MiniLM sentence embeddings of text files and of OCR text.
    pub text_embedding: bool,
    /// MobileNetV2 ImageNet tags (top 5) and the 1280-d image embedding.
    pub tags: bool,
    /// open_nsfw score of images and sampled video frames.
    pub nsfw: bool,
    /// Whisper transcripts of audio files and video soundtracks.
    pub transcript: bool,
    /// CLIP image embedding and zero-shot labels (skipped, with one warning, when the CLIP
    /// model is not installed).
    pub clip: bool,
}

/// Where model weights come from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ModelsConfig {
    /// Installed models live in `models_dir/<model id>/`; empty means the user cache directory
    /// (`~/.cache/mediasift/models`).
    pub models_dir: PathBuf,
    /// Explicit folder per model id, tried first.
    pub paths: BTreeMap<String, PathBuf>,
    /// Download missing models from the Hugging Face hub (needs network).
    pub allow_download: bool,
    /// `cpu`, or `cuda:N` in a build with the `cuda` feature.
    pub device: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TextEmbeddingConfig {
    pub model: String,
    /// Tokens per window including [CLS]/[SEP].
    pub max_tokens: usize,
    /// Tokens shared by consecutive windows.
    pub overlap: usize,
}

/// Speech recognition.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TranscriptionConfig {
    /// `whisper-base` (multilingual) or `whisper-tiny.en` (English only, faster).
    pub model: String,
    /// Language code to force (`en`, `fr`, …); empty detects it per file.
    pub language: String,
    /// Beam width (1 = greedy, faster but a little less accurate).
    pub beam_size: usize,
    /// Silero voice activity detection first: silence is skipped, never transcribed.
    pub vad: bool,
    /// A start and end time for every word (cross-attention alignment, as faster-whisper's
    /// `word_timestamps`).
    pub word_timestamps: bool,
}

impl Default for TranscriptionConfig {
    fn default() -> Self {
        TranscriptionConfig {
            model: "whisper-base".into(),
            language: String::new(),
            beam_size: 5,
            vad: true,
            word_timestamps: true,
        }
    }
}

/// When to run OCR on an image.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OcrMode {
    Always,
    Never,
    /// Only images that look like a page, scan or screenshot (mostly flat light and dark areas).
    Auto,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OcrConfig {
    pub mode: OcrMode,
    /// Tesseract languages joined by `+` (`eng+deu`); each needs its tesseract-ocr-LANG package.
    pub languages: String,
    pub tesseract: String,
    /// A Tesseract run still busy after this long is killed and the OCR result says why.
    pub timeout_secs: u64,
}

/// How model inputs from many files are grouped.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BatchingConfig {
    /// Most inputs (text windows, images) per forward pass.
    pub max_batch: usize,
    /// How long a partial batch waits for more inputs, in milliseconds.
    pub max_wait_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DuplicatesConfig {
    /// Two images are near-duplicates when their 64-bit pHashes differ in at most this many bits.
    pub max_hamming_distance: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PipelineConfig {
    /// Files decoded at once; 0 means one per CPU core.
    pub decode_tasks: usize,
    /// Files between decode and write at once (decoded and waiting on a model batch, or being
    /// analyzed); 0 means `decode_tasks + 2 × batching.max_batch`: one full batch in the model
    /// while the files of the next one decode and wait (with one batch's worth, the batch after a
    /// full one held only what decoded meanwhile: CLIP's mean batch was 17 instead of 27).
    pub in_flight: usize,
    /// Capacity of each bounded channel between stages.
    pub queue_depth: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreConfig {
    /// Where the embedded database and blobs live (`--data` overrides it).
    pub data_dir: PathBuf,
}

impl Default for IntakeConfig {
    fn default() -> Self {
        IntakeConfig {
            max_file_bytes: 4 << 30,
            max_pixels: 40_000_000,
            max_duration_secs: 4.0 * 3600.0,
            decode_timeout_secs: 60.0,
            silence_threshold_dbfs: -50.0,
        }
    }
}

impl Default for VideoConfig {
    fn default() -> Self {
        VideoConfig {
            frame_interval_secs: 2.0,
            max_frames: 64,
            scene_detection: true,
            scene_threshold: 0.4,
            ffmpeg: "ffmpeg".into(),
            ffprobe: "ffprobe".into(),
        }
    }
}

impl Default for AnalyzersConfig {
    fn default() -> Self {
        AnalyzersConfig {
            metadata: true,
            phash: true,
            loudness: true,
            thumbnail: true,
            thumbnail_size: 256,
            text_embedding: true,
            tags: true,
            nsfw: true,
            transcript: true,
            clip: true,
        }
    }
}

impl Default for ModelsConfig {
    fn default() -> Self {
        ModelsConfig {
            models_dir: PathBuf::new(),
            paths: BTreeMap::new(),
            allow_download: false,
            device: "cpu".into(),
        }
    }
}

impl Default for TextEmbeddingConfig {
    fn default() -> Self {
        TextEmbeddingConfig {
            model: "all-MiniLM-L6-v2".into(),
            max_tokens: 256,
            overlap: 32,
        }
    }
}

impl Default for OcrConfig {
    fn default() -> Self {
        OcrConfig {
            mode: OcrMode::Auto,
            languages: "eng".into(),
            tesseract: "tesseract".into(),
            timeout_secs: 120,
        }
    }
}

impl Default for BatchingConfig {
    fn default() -> Self {
        BatchingConfig {
            max_batch: 32,
            max_wait_ms: 10,
        }
    }
}

impl Default for DuplicatesConfig {
    fn default() -> Self {
        DuplicatesConfig {
            max_hamming_distance: 8,
        }
    }
}

impl Default for PipelineConfig {
    fn default() -> Self {
        PipelineConfig {
            decode_tasks: 0,
            in_flight: 0,
            queue_depth: 64,
        }
    }
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            data_dir: PathBuf::from("./mediasift-data"),
        }
    }
}

/// `$XDG_CACHE_HOME/mediasift`, else `$HOME/.cache/mediasift`.
fn default_cache_dir() -> PathBuf {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(std::env::temp_dir);
    base.join("mediasift")
}

/// Why the configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("config file {} does not exist", .0.display())]
    Missing(PathBuf),
    #[error("invalid configuration: {0}")]
    Parse(Box<figment::Error>),
    #[error("invalid configuration: {key} = {value}: {reason}")]
    Invalid {
        key: &'static str,
        value: String,
        reason: &'static str,
    },
}

/// Validated configuration; only [`RawConfig::validate`] makes one.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    raw: RawConfig,
    pub decode_tasks: usize,
    /// Files in flight between decode and write (see `PipelineConfig::in_flight`).
    pub in_flight: usize,
    pub decode_timeout: Duration,
}

impl RawConfig {
    /// Loads defaults → `config/mediasift.toml` (if present under `cwd`) → `explicit` →
    /// `MEDIASIFT__*` environment.
    pub fn load(cwd: &Path, explicit: Option<&Path>) -> Result<RawConfig, ConfigError> {
        let mut figment = Figment::from(Serialized::defaults(RawConfig::default()));
        let default_file = cwd.join(DEFAULT_CONFIG_FILE);
        if default_file.is_file() {
            figment = figment.merge(Toml::file_exact(default_file));
        }
        if let Some(path) = explicit {
            if !path.is_file() {
                return Err(ConfigError::Missing(path.to_path_buf()));
            }
            figment = figment.merge(Toml::file_exact(path));
        }
        figment = figment.merge(Env::prefixed("MEDIASIFT__").split("__"));
        figment
            .extract()
            .map_err(|e| ConfigError::Parse(Box::new(e)))
    }

    /// Checks every value once, at start-up.
    pub fn validate(self) -> Result<Config, ConfigError> {
        fn positive(key: &'static str, v: f64) -> Result<(), ConfigError> {
            if v.is_finite() && v > 0.0 {
                Ok(())
            } else {
                Err(ConfigError::Invalid {
                    key,
                    value: v.to_string(),
                    reason: "must be > 0",
                })
            }
        }
        let i = &self.intake;
        positive("intake.max_duration_secs", i.max_duration_secs)?;
        positive("intake.decode_timeout_secs", i.decode_timeout_secs)?;
        positive("video.frame_interval_secs", self.video.frame_interval_secs)?;
        for (key, v) in [
            ("intake.max_file_bytes", i.max_file_bytes),
            ("intake.max_pixels", i.max_pixels),
        ] {
            if v == 0 {
                return Err(ConfigError::Invalid {
                    key,
                    value: "0".into(),
                    reason: "must be > 0",
                });
            }
        }
        if !(0.0..=1.0).contains(&self.video.scene_threshold) {
            return Err(ConfigError::Invalid {
                key: "video.scene_threshold",
                value: self.video.scene_threshold.to_string(),
                reason: "must be within 0..=1",
            });
        }
        if self.duplicates.max_hamming_distance > 32 {
            return Err(ConfigError::Invalid {
                key: "duplicates.max_hamming_distance",
                value: self.duplicates.max_hamming_distance.to_string(),
                reason: "above 32 of 64 bits everything matches",
            });
        }
        if self.pipeline.queue_depth == 0 {
            return Err(ConfigError::Invalid {
                key: "pipeline.queue_depth",
                value: "0".into(),
                reason: "must be > 0",
            });
        }
        if !(16..=4096).contains(&self.analyzers.thumbnail_size) {
            return Err(ConfigError::Invalid {
                key: "analyzers.thumbnail_size",
                value: self.analyzers.thumbnail_size.to_string(),
                reason: "must be within 16..=4096",
            });
        }
        let te = &self.text_embedding;
        if te.max_tokens < 8 || te.max_tokens > 512 || te.overlap + 2 >= te.max_tokens {
            return Err(ConfigError::Invalid {
                key: "text_embedding.max_tokens",
                value: format!("{} (overlap {})", te.max_tokens, te.overlap),
                reason: "must be within 8..=512 and exceed overlap + 2",
            });
        }
        if !(1..=16).contains(&self.transcription.beam_size) {
            return Err(ConfigError::Invalid {
                key: "transcription.beam_size",
                value: self.transcription.beam_size.to_string(),
                reason: "must be within 1..=16",
            });
        }
        if self.batching.max_batch == 0 {
            return Err(ConfigError::Invalid {
                key: "batching.max_batch",
                value: "0".into(),
                reason: "must be > 0",
            });
        }
        if self.models.device != "cpu" && !self.models.device.starts_with("cuda:") {
            return Err(ConfigError::Invalid {
                key: "models.device",
                value: self.models.device.clone(),
                reason: "must be `cpu` or `cuda:N`",
            });
        }
        let d = &self.distributed;
        if d.ack_wait_secs == 0 || d.max_deliver < 1 || d.fusion_timeout_secs == 0 {
            return Err(ConfigError::Invalid {
                key: "distributed.ack_wait_secs",
                value: format!(
                    "{} (max_deliver {}, fusion_timeout_secs {})",
                    d.ack_wait_secs, d.max_deliver, d.fusion_timeout_secs
                ),
                reason: "ack_wait_secs, max_deliver and fusion_timeout_secs must be > 0",
            });
        }
        let m = &self.moderation;
        if !(0.0..=1.0).contains(&m.nsfw_review) || !(m.nsfw_review..=1.0).contains(&m.nsfw_block) {
            return Err(ConfigError::Invalid {
                key: "moderation.nsfw_review",
                value: format!("{} (nsfw_block {})", m.nsfw_review, m.nsfw_block),
                reason: "need 0 <= nsfw_review <= nsfw_block <= 1",
            });
        }
        let f = &self.fusion;
        if [f.image_weight, f.text_weight, f.clip_weight]
            .iter()
            .any(|w| !w.is_finite() || *w < 0.0)
        {
            return Err(ConfigError::Invalid {
                key: "fusion.image_weight",
                value: format!("{} / {} / {}", f.image_weight, f.text_weight, f.clip_weight),
                reason: "fusion weights must be finite and >= 0",
            });
        }
        if !self.clip.prompt.contains("{}") {
            return Err(ConfigError::Invalid {
                key: "clip.prompt",
                value: self.clip.prompt.clone(),
                reason: "must contain {} where the label goes",
            });
        }
        let decode_tasks = match self.pipeline.decode_tasks {
            0 => std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(2),
            n => n,
        };
        let decode_timeout = Duration::from_secs_f64(self.intake.decode_timeout_secs);
        let in_flight = match self.pipeline.in_flight {
            0 => decode_tasks + 2 * self.batching.max_batch,
            n => n.max(decode_tasks),
        };
        Ok(Config {
            raw: self,
            decode_tasks,
            in_flight,
            decode_timeout,
        })
    }
}

impl Config {
    pub fn raw(&self) -> &RawConfig {
        &self.raw
    }
    pub fn intake(&self) -> &IntakeConfig {
        &self.raw.intake
    }
    pub fn video(&self) -> &VideoConfig {
        &self.raw.video
    }
    pub fn analyzers(&self) -> &AnalyzersConfig {
        &self.raw.analyzers
    }
    pub fn duplicates(&self) -> &DuplicatesConfig {
        &self.raw.duplicates
    }
    pub fn pipeline(&self) -> &PipelineConfig {
        &self.raw.pipeline
    }
    pub fn store(&self) -> &StoreConfig {
        &self.raw.store
    }
    pub fn models(&self) -> &ModelsConfig {
        &self.raw.models
    }
    pub fn text_embedding(&self) -> &TextEmbeddingConfig {
        &self.raw.text_embedding
    }
    pub fn transcription(&self) -> &TranscriptionConfig {
        &self.raw.transcription
    }
    pub fn ocr(&self) -> &OcrConfig {
        &self.raw.ocr
    }
    pub fn distributed(&self) -> &DistributedConfig {
        &self.raw.distributed
    }
    pub fn moderation(&self) -> &ModerationConfig {
        &self.raw.moderation
    }
    pub fn fusion(&self) -> &FusionConfig {
        &self.raw.fusion
    }
    pub fn clip(&self) -> &ClipConfig {
        &self.raw.clip
    }
    pub fn batching(&self) -> &BatchingConfig {
        &self.raw.batching
    }
    /// `models.models_dir`, or `~/.cache/mediasift/models` when unset.
    pub fn models_dir(&self) -> PathBuf {
        if self.raw.models.models_dir.as_os_str().is_empty() {
            default_cache_dir().join("models")
        } else {
            self.raw.models.models_dir.clone()
        }
    }
    /// Overrides the data directory for one run (`--data`).
    pub fn set_data_dir(&mut self, dir: PathBuf) {
        self.raw.store.data_dir = dir;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_keys_are_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("bad.toml");
        std::fs::write(&file, "[intake]\nmax_pixel = 5\n").unwrap();
        let err = RawConfig::load(dir.path(), Some(&file))
            .unwrap_err()
            .to_string();
        assert!(err.contains("max_pixel"), "{err}");
    }

    #[test]
    fn file_overrides_defaults_and_validation_catches_zero() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("c.toml");
        std::fs::write(
            &file,
            "[intake]\nmax_pixels = 1000\n[pipeline]\ndecode_tasks = 3\n",
        )
        .unwrap();
        let raw = RawConfig::load(dir.path(), Some(&file)).expect("loads");
        assert_eq!(raw.intake.max_pixels, 1000);
        assert_eq!(
            raw.intake.max_file_bytes,
            IntakeConfig::default().max_file_bytes
        );
        let cfg = raw.clone().validate().expect("valid");
        assert_eq!(cfg.decode_tasks, 3);

        let mut bad = raw;
        bad.intake.max_pixels = 0;
        assert!(matches!(
            bad.validate(),
            Err(ConfigError::Invalid {
                key: "intake.max_pixels",
                ..
            })
        ));
    }

    /// The commented reference file must parse and state the built-in defaults.
    #[test]
    fn reference_config_file_states_the_defaults() {
        let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let raw = RawConfig::load(&repo, None).expect("config/mediasift.toml loads");
        assert_eq!(raw, RawConfig::default());
    }
}
