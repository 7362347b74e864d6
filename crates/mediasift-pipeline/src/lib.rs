//! The mediasift pipeline: analyzers and the stages a file goes through, shared by the embedded
//! run (`mediasift analyze`) and the distributed workers. A file is hashed (the cache key), skipped
//! when nothing changed, otherwise decoded under a watchdog and analyzed; results go to the store.
//!
//! ```no_run
//! # async fn demo() -> anyhow::Result<()> {
//! use std::sync::Arc;
//! use mediasift_core::RawConfig;
//! use mediasift_pipeline::{Metrics, RunOptions, Stage, run_embedded};
//!
//! let cfg = Arc::new(RawConfig::default().validate()?);
//! let tools = mediasift_media::Tools::detect(cfg.video());
//! let store = mediasift_store::SqliteStore::open("data".as_ref()).await?;
//! let blobs = mediasift_store::BlobStore::local("data/blobs".as_ref())?;
//! let models = mediasift_pipeline::ModelSet::load(&cfg)?;
//! let stage = Stage::new(cfg, tools, &models, Metrics::new());
//! let opts = RunOptions { inputs: vec!["photos".into()], ..Default::default() };
//! let summary = run_embedded(stage, store, blobs, opts).await?;
//! println!("{} files failed", summary.total().failed);
//! # Ok(()) }
//! ```

pub mod analyzer;
mod batch;
mod duplicates;
mod hash;
mod metrics;
mod models;
mod progress;
mod run;
mod stage;
mod summary;
mod walk;
mod watchdog;

/// Version of sniffing and decoding; part of every pipeline signature.
pub const INTAKE_VERSION: &str = "1";

pub use batch::Batcher;
pub use duplicates::{DuplicateGroup, group as group_duplicates};
pub use hash::hash_file;
pub use metrics::{
    InferenceMetrics, Metrics, inference as inference_metrics, render as render_metrics,
};
pub use models::{ModelSet, store as model_store};
pub use run::{RunError, RunOptions, run_embedded};
pub use stage::{Processed, Stage};
pub use summary::{FileOutcome, KindCounts, Summary};
pub use walk::{WalkOptions, walk};
