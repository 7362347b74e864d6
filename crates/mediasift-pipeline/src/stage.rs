//! The analysis stage of one file, shared by the embedded run and (later) the distributed
//! workers: sniff, decode under the watchdog, run the analyzers. Transport and storage are the
//! caller's business.

use std::collections::HashSet;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use mediasift_core::{Config, ErrorInfo, ErrorKind, FileStatus, Flag, MediaError, MediaKind};
use mediasift_media::{Intake, SNIFF_LEN, Sniffed, Tools, decode_file, sniff};
use mediasift_store::{AnalysisRow, FileRow};

use crate::analyzer::{Analyzers, FileContext};
use crate::metrics::Metrics;
use crate::models::ModelSet;
use crate::watchdog::run_guarded;

/// Everything produced for one file, ready to be stored.
#[derive(Debug, Clone)]
pub struct Processed {
    pub file: FileRow,
    pub analyses: Vec<AnalysisRow>,
    pub phash: Option<u64>,
    /// Blobs to write before the record (object key, bytes).
    pub blobs: Vec<(String, Vec<u8>)>,
}

/// The configured analysis stage.
#[derive(Debug, Clone)]
pub struct Stage {
    cfg: Arc<Config>,
    tools: Arc<Tools>,
    analyzers: Arc<Analyzers>,
    metrics: Metrics,
    /// `decode_tasks` permits: more files may be in flight (waiting on a model batch) than
    /// are decoded at once.
    decoding: Arc<tokio::sync::Semaphore>,
}

impl Stage {
    pub fn new(cfg: Arc<Config>, tools: Tools, models: &ModelSet, metrics: Metrics) -> Stage {
        let analyzers = Arc::new(Analyzers::from_config(&cfg, models));
        let decoding = Arc::new(tokio::sync::Semaphore::new(cfg.decode_tasks.max(1)));
        Stage {
            cfg,
            tools: Arc::new(tools),
            analyzers,
            metrics,
            decoding,
        }
    }

    pub fn signature(&self) -> &str {
        self.analyzers.signature()
    }

    pub fn config(&self) -> &Config {
        &self.cfg
    }

    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// A record for a file that failed before it could be analyzed (unreadable, too large).
    pub fn failed(
        &self,
        record_path: String,
        hash: Option<String>,
        size: u64,
        kind: MediaKind,
        err: &MediaError,
    ) -> Processed {
        Processed {
            file: FileRow {
                path: record_path,
                content_hash: hash,
                size_bytes: size,
                kind,
                format: None,
                status: FileStatus::Failed,
                error: Some(ErrorInfo {
                    kind: err.kind,
                    message: err.message.clone(),
                }),
                flags: Vec::new(),
                pipeline_signature: self.signature().to_string(),
            },
            analyses: Vec::new(),
            phash: None,
            blobs: Vec::new(),
        }
    }

    /// Name and revision of every enabled analyzer, in run order: a stored result with the same
    /// pair can be reused instead of recomputed.
    pub fn revisions(&self) -> Vec<(&'static str, String)> {
        self.analyzers
            .iter()
            .map(|a| (a.name(), a.revision()))
            .collect()
    }

    /// Decodes and analyzes one local file whose content hash is known.
    pub async fn analyze(
        &self,
        path: &Path,
        record_path: String,
        hash: String,
        size: u64,
    ) -> Processed {
        self.analyze_except(path, record_path, hash, size, Arc::new(HashSet::new()))
            .await
    }

    /// Embeds text derived from another modality (a transcript, OCR text) for the content
    /// `hash`, as the text analyzers would have inside one process. Blocking (runs the model).
    pub fn analyze_text(&self, hash: &str, source: &str, text: &str) -> Processed {
        let mut analyses: Vec<AnalysisRow> = Vec::new();
        let mut blobs = Vec::new();
        for analyzer in self.analyzers.iter() {
            let ctx = FileContext {
                content_hash: hash,
                size_bytes: 0,
                earlier: &analyses,
            };
            if let Some(out) = analyzer.analyze_text(text, source, ctx) {
                blobs.extend(out.blobs);
                analyses.push(AnalysisRow {
                    analyzer: analyzer.name().into(),
                    version: analyzer.revision(),
                    output: out.value,
                });
            }
        }
        Processed {
            file: FileRow {
                path: String::new(),
                content_hash: Some(hash.to_string()),
                size_bytes: 0,
                kind: MediaKind::Text,
                format: None,
                status: FileStatus::Ok,
                error: None,
                flags: Vec::new(),
                pipeline_signature: self.signature().to_string(),
            },
            analyses,
            phash: None,
            blobs,
        }
    }

    /// As [`Stage::analyze`], leaving out the analyzers named in `skip` (their stored results
    /// are current).
    pub async fn analyze_except(
        &self,
        path: &Path,
        record_path: String,
        hash: String,
        size: u64,
        skip: Arc<HashSet<String>>,
    ) -> Processed {
        let started = Instant::now();
        let timeout = self.cfg.decode_timeout;
        let (cfg, tools) = (self.cfg.clone(), self.tools.clone());
        let owned_path: PathBuf = path.to_path_buf();
        // The timeout guards decoding, where hostile input can make a decoder loop; analysis
        // time grows with legitimate content (a long book through the text model) and is not cut.
        let permit = self.decoding.acquire().await;
        let guarded = run_guarded(path, timeout, &self.metrics, move || {
            // The sniffed kind labels the file even when decoding fails.
            let kind = sniff_kind(&owned_path);
            let deadline = Instant::now() + timeout;
            Ok((kind, decode_file(&owned_path, &cfg, &tools, deadline)))
        })
        .await;
        drop(permit);
        let (kind, decoded) = match guarded {
            Ok(done) => done,
            // Timed out or crashed: sniffing is cheap and safe where decoding was not.
            Err(err) => {
                let p = path.to_path_buf();
                let kind = tokio::task::spawn_blocking(move || sniff_kind(&p))
                    .await
                    .unwrap_or(MediaKind::Unknown);
                (kind, Err(err))
            }
        };
        self.metrics
            .decode_seconds
            .with_label_values(&[kind.as_str()])
            .observe(started.elapsed().as_secs_f64());
        let intake = match decoded {
            Ok(intake) => intake,
            Err(err) => return self.failed(record_path, Some(hash), size, kind, &err),
        };
        let analyzers = self.analyzers.clone();
        let analyzed_at = Instant::now();
        let hash_for_work = hash.clone();
        let result = tokio::task::spawn_blocking(move || {
            run_analyzers(&intake, &analyzers, &hash_for_work, size, &skip)
        })
        .await;
        self.metrics
            .analyze_seconds
            .with_label_values(&[kind.as_str()])
            .observe(analyzed_at.elapsed().as_secs_f64());
        match result {
            Ok(done) => Processed {
                file: FileRow {
                    path: record_path,
                    content_hash: Some(hash),
                    pipeline_signature: self.signature().to_string(),
                    ..done.file
                },
                ..done
            },
            Err(e) => {
                self.metrics.decoder_panics.inc();
                let err = MediaError::new(
                    path,
                    ErrorKind::Corrupt,
                    format!("an analyzer crashed on this file: {e}"),
                );
                self.failed(record_path, Some(hash), size, kind, &err)
            }
        }
    }
}

fn run_analyzers(
    intake: &Intake,
    analyzers: &Analyzers,
    hash: &str,
    size: u64,
    skip: &HashSet<String>,
) -> Processed {
    let mut analyses: Vec<AnalysisRow> = Vec::new();
    let mut phash = None;
    let mut blobs = Vec::new();
    for analyzer in analyzers.iter().filter(|a| !skip.contains(a.name())) {
        let ctx = FileContext {
            content_hash: hash,
            size_bytes: size,
            earlier: &analyses,
        };
        if let Some(out) = analyzer.analyze(intake, ctx) {
            phash = phash.or(out.phash);
            blobs.extend(out.blobs);
            let revision = analyzer.revision();
            for (name, value) in out.also {
                analyses.push(AnalysisRow {
                    analyzer: name.into(),
                    version: revision.clone(),
                    output: value,
                });
            }
            analyses.push(AnalysisRow {
                analyzer: analyzer.name().into(),
                version: revision,
                output: out.value,
            });
        }
    }
    let mut flags = Vec::new();
    if intake.extension_mismatch.is_some() {
        flags.push(Flag::ExtensionMismatch);
    }
    if intake.decoded.truncated() {
        flags.push(Flag::Truncated);
    }
    Processed {
        file: FileRow {
            path: String::new(),
            content_hash: None,
            size_bytes: size,
            kind: intake.kind,
            format: Some(intake.format.as_str().to_string()),
            status: FileStatus::Ok,
            error: None,
            flags,
            pipeline_signature: String::new(),
        },
        analyses,
        phash,
        blobs,
    }
}

/// The kind a file's first bytes suggest, to label failures of files that never decoded.
fn sniff_kind(path: &Path) -> MediaKind {
    let mut head = Vec::with_capacity(SNIFF_LEN);
    let read =
        std::fs::File::open(path).and_then(|f| f.take(SNIFF_LEN as u64).read_to_end(&mut head));
    match (read, sniff(&head)) {
        (Ok(_), Sniffed::Media(format)) => format.default_kind(),
        _ => MediaKind::Unknown,
    }
}
