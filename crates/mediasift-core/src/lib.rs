//! Core vocabulary of mediasift, shared by every stage and both run modes: what kind of media a
//! file is, why intake of a file failed (and whether retrying can help), what a stored record
//! looks like, and the layered configuration. This crate does no media or network I/O.
//!
//! ```
//! use mediasift_core::{ErrorKind, MediaError, MediaKind};
//!
//! let err = MediaError::new("/in/a.jpg", ErrorKind::Empty, "empty file (0 bytes)");
//! assert!(err.is_permanent());
//! assert_eq!(MediaKind::Image.as_str(), "image");
//! ```

mod config;
mod dist_config;
mod error;
mod kind;
mod record;

pub use config::{
    AnalyzersConfig, BatchingConfig, ClipConfig, Config, ConfigError, DistributedConfig,
    DuplicatesConfig, FusionConfig, IntakeConfig, ModelsConfig, ModerationConfig, OcrConfig,
    OcrMode, PipelineConfig, RawConfig, StoreConfig, TextEmbeddingConfig, TranscriptionConfig,
    VideoConfig,
};
pub use error::{ErrorKind, MediaError};
pub use kind::MediaKind;
pub use record::{ErrorInfo, ExportRecord, FileStatus, Flag};
