//! The embedded run behind `mediasift analyze`: a walker feeding a bounded channel, a fixed
//! number of file tasks (`in_flight`, of which `decode_tasks` decode at once while the others
//! wait on model batches), and one writer that stores results in order of completion. Memory is
//! bounded by `in_flight` files plus the channel depths.

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Instant;

use mediasift_core::{ErrorInfo, ErrorKind, FileStatus, Flag, MediaKind};
use mediasift_media::{Format, extension_mismatch};
use mediasift_store::{BlobStore, FileRow, SqliteStore, StoreError};
use tokio::sync::{Mutex, mpsc};

use crate::hash::hash_file;
use crate::progress::Progress;
use crate::stage::{Processed, Stage};
use crate::summary::{FileOutcome, Summary};
use crate::walk::{WalkOptions, walk};

/// Per-run choices (the config file describes the pipeline; these describe one run).
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    pub inputs: Vec<PathBuf>,
    /// Re-analyze files even when content and analyzers are unchanged.
    pub force: bool,
    pub include_hidden: bool,
    /// Show a progress bar when stderr is a terminal.
    pub progress: bool,
}

/// A failure that stops the whole run (the store became unusable).
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("internal task failed: {0}")]
    Task(String),
}

enum Outcome {
    Skipped(MediaKind),
    Write(Box<Processed>, FileOutcome),
    Fatal(StoreError),
}

/// Analyzes every file under `opts.inputs` into `store`/`blobs`.
pub async fn run_embedded(
    stage: Stage,
    store: SqliteStore,
    blobs: BlobStore,
    opts: RunOptions,
) -> Result<Summary, RunError> {
    let started = Instant::now();
    let depth = stage.config().pipeline().queue_depth;
    // Decoding itself is bounded by the stage (`decode_tasks` at once); more files than that
    // are in flight so the models' cross-file batches can fill.
    let workers = stage.config().in_flight;
    let progress = Progress::new(opts.progress);
    let (path_tx, path_rx) = mpsc::channel::<PathBuf>(depth);
    let (out_tx, mut out_rx) = mpsc::channel::<Outcome>(depth);

    let walk_opts = WalkOptions {
        include_hidden: opts.include_hidden,
        exclude: vec![stage.config().store().data_dir.clone()],
    };
    let inputs = opts.inputs.clone();
    let walk_progress = progress.clone();
    let walker = tokio::task::spawn_blocking(move || {
        walk(&inputs, &walk_opts, |path| {
            walk_progress.found();
            path_tx.blocking_send(path).is_ok()
        })
    });

    let path_rx = Arc::new(Mutex::new(path_rx));
    let mut tasks = Vec::with_capacity(workers);
    for _ in 0..workers {
        let (rx, tx, stage, store) = (
            path_rx.clone(),
            out_tx.clone(),
            stage.clone(),
            store.clone(),
        );
        let force = opts.force;
        tasks.push(tokio::spawn(async move {
            loop {
                let next = rx.lock().await.recv().await;
                let Some(path) = next else { break };
                let outcome = handle(&stage, &store, &path, force).await;
                if tx.send(outcome).await.is_err() {
                    break;
                }
            }
        }));
    }
    drop(out_tx);

    let mut summary = Summary::default();
    let mut fatal = None;
    while let Some(outcome) = out_rx.recv().await {
        let (kind, result) = match outcome {
            Outcome::Skipped(kind) => (kind, FileOutcome::Skipped),
            Outcome::Write(mut processed, result) => {
                let t = Instant::now();
                if let Err(e) = write(&store, &blobs, &mut processed).await {
                    fatal = Some(e);
                    break;
                }
                stage
                    .metrics()
                    .store_write_seconds
                    .observe(t.elapsed().as_secs_f64());
                (processed.file.kind, result)
            }
            Outcome::Fatal(e) => {
                fatal = Some(e);
                break;
            }
        };
        let m = stage.metrics();
        m.files
            .with_label_values(&[kind.as_str(), result.as_str()])
            .inc();
        if let FileOutcome::Failed(reason) = result {
            m.failures
                .with_label_values(&[kind.as_str(), reason.as_str()])
                .inc();
        }
        summary.record(kind, result);
        progress.finished(matches!(result, FileOutcome::Failed(_)));
    }
    drop(out_rx);
    progress.finish();
    if let Some(e) = fatal {
        return Err(RunError::Store(e));
    }
    for t in tasks {
        t.await.map_err(|e| RunError::Task(e.to_string()))?;
    }
    summary.walk_skipped = walker.await.map_err(|e| RunError::Task(e.to_string()))?;
    summary.elapsed = started.elapsed();
    Ok(summary)
}

/// Blobs first, then the record that references them.
async fn write(
    store: &SqliteStore,
    blobs: &BlobStore,
    p: &mut Processed,
) -> Result<(), StoreError> {
    for (key, bytes) in std::mem::take(&mut p.blobs) {
        blobs.put(&key, bytes).await?;
    }
    store.write(&p.file, &p.analyses, p.phash).await
}

async fn handle(stage: &Stage, store: &SqliteStore, path: &Path, force: bool) -> Outcome {
    let record_path = path.to_string_lossy().into_owned();
    let max = stage.config().intake().max_file_bytes;
    let owned = path.to_path_buf();
    let hashed = tokio::task::spawn_blocking(move || hash_file(&owned, max)).await;
    let (hash, size) = match hashed {
        Ok(Ok(h)) => h,
        Ok(Err(err)) => {
            let size = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
            let p = stage.failed(record_path, None, size, MediaKind::Unknown, &err);
            return Outcome::Write(Box::new(p), FileOutcome::Failed(err.kind));
        }
        Err(e) => {
            return Outcome::Fatal(StoreError::Malformed(format!("hashing task failed: {e}")));
        }
    };
    stage.metrics().bytes_read.inc_by(size);
    if !force {
        match reuse(stage, store, path, &record_path, &hash, size).await {
            Ok(Some(outcome)) => return outcome,
            Ok(None) => {}
            Err(e) => return Outcome::Fatal(e),
        }
    }
    let processed = stage.analyze(path, record_path, hash, size).await;
    let result = match &processed.file.error {
        Some(e) => FileOutcome::Failed(e.kind),
        None => FileOutcome::Analyzed,
    };
    Outcome::Write(Box::new(processed), result)
}

/// Skips an unchanged path, or reuses the results of the same content under another path.
async fn reuse(
    stage: &Stage,
    store: &SqliteStore,
    path: &Path,
    record_path: &str,
    hash: &str,
    size: u64,
) -> Result<Option<Outcome>, StoreError> {
    let signature = stage.signature();
    // A failure that may not recur (timeout, I/O, ffmpeg missing until now) is retried.
    let settled = |e: Option<ErrorKind>| e.is_none_or(ErrorKind::is_permanent);
    if let Some(state) = store.file_state(record_path).await?
        && state.content_hash.as_deref() == Some(hash)
        && state.pipeline_signature == signature
        && settled(state.error_kind)
    {
        return Ok(Some(Outcome::Skipped(state.kind)));
    }
    let Some(known) = store.known_content(hash, signature).await? else {
        return Ok(None);
    };
    if !settled(known.error.as_ref().map(|e| e.kind)) {
        return Ok(None);
    }
    let mut flags = known.flags.clone();
    if let Some(format) = known
        .format
        .as_deref()
        .and_then(|f| Format::from_str(f).ok())
        && known.status == FileStatus::Ok
        && extension_mismatch(path, format).is_some()
    {
        flags.push(Flag::ExtensionMismatch);
        flags.sort();
    }
    let result = match &known.error {
        Some(ErrorInfo { kind, .. }) => FileOutcome::Failed(*kind),
        None => FileOutcome::Reused,
    };
    let processed = Processed {
        file: FileRow {
            path: record_path.to_string(),
            content_hash: Some(hash.to_string()),
            size_bytes: size,
            kind: known.kind,
            format: known.format,
            status: known.status,
            error: known.error,
            flags,
            pipeline_signature: signature.to_string(),
        },
        // The analyses are stored under the content hash already.
        analyses: Vec::new(),
        phash: None,
        blobs: Vec::new(),
    };
    Ok(Some(Outcome::Write(Box::new(processed), result)))
}
