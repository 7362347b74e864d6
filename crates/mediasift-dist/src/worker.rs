//! `mediasift worker --modality vision|audio|text`: pulls tasks, runs that modality's analyzers
//! (the same stage code as `mediasift analyze`), writes blobs, then rows, then acknowledges.
//! Results are content-addressed: analyzers whose output for these bytes at this revision is
//! stored are not run again.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mediasift_core::{FileStatus, RawConfig};
use mediasift_pipeline::{Processed, Stage};
use serde_json::{Value, json};
use tokio::task::JoinSet;

use crate::DistError;
use crate::bus::{StreamKind, fetch, stream_seq};
use crate::coalesce::Coalescer;
use crate::context::Ctx;
use crate::messages::{DerivedText, ResultMsg, TaskMsg};
use crate::pg::{AnalysisWrite, ModalityReport, Pg};
use crate::service::Shutdown;
use crate::settle::{Failure, heartbeat, settle};
use crate::source::Source;

/// The three worker kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Modality {
    Vision,
    Audio,
    Text,
}

impl Modality {
    pub fn parse(s: &str) -> Option<Modality> {
        match s {
            "vision" => Some(Modality::Vision),
            "audio" => Some(Modality::Audio),
            "text" => Some(Modality::Text),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Modality::Vision => "vision",
            Modality::Audio => "audio",
            Modality::Text => "text",
        }
    }

    /// The configuration of this worker's stage: the analyzers of its modality only (each as
    /// configured), so it loads only its own models.
    pub fn stage_config(self, raw: &RawConfig) -> RawConfig {
        let mut raw = raw.clone();
        let a = &mut raw.analyzers;
        let vision = self == Modality::Vision;
        let audio = self == Modality::Audio;
        let text = self == Modality::Text;
        a.phash &= vision;
        a.thumbnail &= vision;
        a.tags &= vision;
        a.nsfw &= vision;
        a.clip &= vision;
        a.loudness &= audio;
        a.transcript &= audio;
        a.text_embedding &= text;
        if !vision {
            raw.ocr.mode = mediasift_core::OcrMode::Never;
        }
        raw
    }
}

/// The name of the file-facts pseudo-analysis (kind, format, flags) stored with the analyses so
/// a reused result still has them.
const FACTS: &str = "_file";

pub async fn run(
    ctx: Ctx,
    stage: Stage,
    modality: Modality,
    concurrency: usize,
    shutdown: Shutdown,
) -> Result<(), DistError> {
    let name = modality.as_str();
    let durable = format!("worker-{name}");
    let consumer = ctx
        .bus
        .consumer(
            StreamKind::Tasks,
            &durable,
            &ctx.bus.task_subject(name),
            ctx.ack_wait(),
            ctx.cfg.distributed().max_deliver,
            // Enough for every worker of this kind to hold its share.
            10_000,
        )
        .await?;
    let stage_name: &'static str = name;
    crate::metrics::watch_consumer(consumer.clone(), stage_name, ctx.metrics.clone());
    let plan = Arc::new(Plan::new(stage));
    let db = WorkerDb::spawn(&ctx.pg);
    let concurrency = concurrency.max(1);
    tracing::info!(modality = name, concurrency, "Worker running");
    let mut running: JoinSet<()> = JoinSet::new();
    while !shutdown.requested() {
        while running.len() >= concurrency {
            running.join_next().await;
        }
        let want = concurrency - running.len();
        let batch = tokio::select! {
            b = fetch(&consumer, want, Duration::from_secs(1)) => b,
            _ = shutdown.wait() => break,
        };
        for msg in batch {
            let (ctx, plan, db) = (ctx.clone(), plan.clone(), db.clone());
            running.spawn(async move { handle(&ctx, &db, &plan, stage_name, msg).await });
        }
        // Reap finished tasks without waiting.
        while running.try_join_next().is_some() {}
    }
    tracing::info!(in_flight = running.len(), "Finishing tasks in flight");
    while running.join_next().await.is_some() {}
    tracing::info!(modality = name, "Worker stopped");
    Ok(())
}

/// (analyzer, revision) pairs a stage produces.
type Wanted = Vec<(&'static str, String)>;

/// The worker's stage with its analyzer revisions, computed once rather than per task.
#[derive(Debug)]
struct Plan {
    stage: Stage,
    /// The stage's analyzers.
    analyzers: Wanted,
    /// The same plus the file facts: what a file task stores.
    with_facts: Wanted,
}

impl Plan {
    fn new(stage: Stage) -> Plan {
        let analyzers = stage.revisions();
        let mut with_facts = analyzers.clone();
        with_facts.push((FACTS, mediasift_pipeline::INTAKE_VERSION.to_string()));
        Plan {
            stage,
            analyzers,
            with_facts,
        }
    }
}

/// The worker's database access, batched across its concurrent tasks.
#[derive(Debug, Clone)]
struct WorkerDb {
    current: Coalescer<(String, Wanted), HashSet<String>>,
    reports: Coalescer<ModalityReport, ()>,
}

impl WorkerDb {
    fn spawn(pg: &Pg) -> WorkerDb {
        let p = pg.clone();
        let current = Coalescer::spawn(256, move |requests: Vec<_>| {
            let pg = p.clone();
            async move {
                pg.current_analyzers(&requests)
                    .await
                    .map_err(|e| e.to_string())
            }
        });
        let p = pg.clone();
        let reports = Coalescer::spawn(256, move |reports: Vec<ModalityReport>| {
            let pg = p.clone();
            async move {
                pg.write_reports(&reports)
                    .await
                    .map(|()| vec![(); reports.len()])
                    .map_err(|e| e.to_string())
            }
        });
        WorkerDb { current, reports }
    }
}

async fn handle(
    ctx: &Ctx,
    db: &WorkerDb,
    plan: &Plan,
    name: &'static str,
    msg: async_nats::jetstream::Message,
) {
    let started = Instant::now();
    let task: TaskMsg = match serde_json::from_slice(&msg.payload) {
        Ok(t) => t,
        Err(e) => {
            let err = DistError::BadMessage(e.to_string());
            settle(ctx, name, &msg, started, Err(err), "", "").await;
            return;
        }
    };
    let beat = heartbeat(&msg, (ctx.ack_wait() / 3).max(Duration::from_secs(1)));
    let seq = stream_seq(&msg);
    let outcome = process(ctx, db, plan, &task, seq).await;
    beat.abort();
    let failed = settle(ctx, name, &msg, started, outcome, &task.job_id, &task.uri).await;
    if let Some((Failure::DeadLettered, err)) = failed {
        // The job's record shows this modality as failed, with why.
        let reported = async {
            let report = ModalityReport {
                job_id: task.job_id.clone(),
                modality: task.modality.clone(),
                error: Some((err.kind().to_string(), err.to_string())),
                analyses: json!([]),
                facts: json!({}),
                ..ModalityReport::default()
            };
            db.reports.call(report).await?;
            publish_result(ctx, &task, false, seq).await
        };
        if let Err(e) = reported.await {
            tracing::error!(error = %e, job_id = task.job_id, "Could not report a failed task");
        }
    }
}

/// `seq` is the task message's stream sequence: one result per task message, so a retried
/// task (a new message) reports again while a redelivered one does not.
async fn publish_result(ctx: &Ctx, task: &TaskMsg, ok: bool, seq: u64) -> Result<(), DistError> {
    let msg = ResultMsg {
        job_id: task.job_id.clone(),
        modality: task.modality.clone(),
        ok,
    };
    let id = format!("{}:{}:{seq}", task.job_id, task.modality);
    ctx.bus
        .publish(ctx.bus.result_subject(&task.modality), &id, &msg)
        .await
}

async fn process(
    ctx: &Ctx,
    db: &WorkerDb,
    plan: &Plan,
    task: &TaskMsg,
    seq: u64,
) -> Result<&'static str, DistError> {
    if let Some(derived) = &task.derived {
        return process_derived(ctx, db, plan, task, derived, seq).await;
    }
    let source = Source::parse(&task.uri)?;
    if !ctx.allow.allows(&source) {
        return Err(DistError::NotAllowed {
            uri: task.uri.clone(),
            roots: ctx.allow.describe(),
        });
    }
    let max_bytes = ctx.cfg.intake().max_file_bytes;
    let input = ctx.objects.localize(&source, max_bytes).await?;
    let wanted = &plan.with_facts;
    let current = db
        .current
        .call((input.hash.clone(), wanted.clone()))
        .await?;
    let reused = current.len() == wanted.len();
    let mut rows = Vec::new();
    if !reused {
        let processed = plan
            .stage
            .analyze_except(
                &input.path,
                task.uri.clone(),
                input.hash.clone(),
                input.size,
                Arc::new(current.clone()),
            )
            .await;
        if processed.file.status == FileStatus::Failed {
            let e = processed.file.error.clone();
            return Err(DistError::Media {
                uri: task.uri.clone(),
                kind: e
                    .as_ref()
                    .map_or(mediasift_core::ErrorKind::Corrupt, |e| e.kind),
                message: e.map(|e| e.message).unwrap_or_default(),
            });
        }
        rows = store(ctx, wanted, &current, processed).await?;
    }
    let pairs: Vec<(String, String)> = wanted
        .iter()
        .map(|(n, r)| (n.to_string(), r.clone()))
        .collect();
    // What this modality produced: just computed, and/or stored before.
    let mut outputs: Vec<(String, Value)> = rows
        .iter()
        .filter_map(|a| a.output.clone().map(|o| (a.analyzer.clone(), o)))
        .collect();
    if !current.is_empty() {
        outputs.extend(ctx.pg.analyses(&input.hash, &pairs).await?);
    }
    // Derived text goes on to the text worker before this result is reported, so the record
    // waits for its embedding.
    let derived_source = match task.modality.as_str() {
        "vision" => Some(("ocr", "text:ocr")),
        "audio" => Some(("transcript", "text:transcript")),
        _ => None,
    };
    if let Some((analyzer, modality)) = derived_source {
        let text = outputs
            .iter()
            .find(|(n, _)| n == analyzer)
            .and_then(|(_, v)| v.get("text"))
            .and_then(Value::as_str)
            .filter(|t| !t.trim().is_empty());
        if let Some(text) = text {
            ctx.pg.expect(&task.job_id, modality).await?;
            let next = TaskMsg {
                job_id: task.job_id.clone(),
                uri: task.uri.clone(),
                modality: modality.to_string(),
                derived: Some(DerivedText {
                    content_hash: input.hash.clone(),
                    source: analyzer.to_string(),
                    text: text.to_string(),
                }),
            };
            let id = format!("{}:{modality}:{seq}", task.job_id);
            ctx.bus
                .publish(ctx.bus.task_subject(modality), &id, &next)
                .await?;
        }
    }
    let facts = outputs
        .iter()
        .find(|(n, _)| n == FACTS)
        .map_or(json!({}), |(_, v)| v.clone());
    db.reports
        .call(ModalityReport {
            job_id: task.job_id.clone(),
            modality: task.modality.clone(),
            error: None,
            analyses: json!(pairs),
            facts,
            reused,
            job_hash: Some(input.hash.clone()),
            rows_hash: input.hash.clone(),
            rows,
        })
        .await?;
    publish_result(ctx, task, true, seq).await?;
    Ok(if reused { "reused" } else { "ok" })
}

/// Writes the blobs (before any row can point at them) and returns the analysis rows to
/// write with the report.
async fn store(
    ctx: &Ctx,
    wanted: &[(&'static str, String)],
    current: &HashSet<String>,
    processed: Processed,
) -> Result<Vec<AnalysisWrite>, DistError> {
    for (key, bytes) in processed.blobs {
        ctx.objects.put(&key, bytes).await?;
    }
    let mut rows: Vec<AnalysisWrite> = Vec::new();
    for (name, revision) in wanted {
        if current.contains(*name) {
            continue;
        }
        let output = if *name == FACTS {
            let f = &processed.file;
            Some(json!({ "kind": f.kind.as_str(), "format": f.format, "flags": f.flags }))
        } else {
            processed
                .analyses
                .iter()
                .find(|a| a.analyzer == *name)
                .map(|a| a.output.clone())
        };
        rows.push(analysis_row(name, revision, output));
    }
    // Companion outputs (the image embedding that comes with the tags).
    for a in &processed.analyses {
        if !wanted.iter().any(|(n, _)| *n == a.analyzer) {
            rows.push(analysis_row(
                &a.analyzer,
                &a.version,
                Some(a.output.clone()),
            ));
        }
    }
    Ok(rows)
}

fn analysis_row(name: &str, revision: &str, output: Option<Value>) -> AnalysisWrite {
    let embedding_key = output
        .as_ref()
        .and_then(|o| o.get("key"))
        .and_then(Value::as_str)
        .map(str::to_string);
    AnalysisWrite {
        analyzer: name.to_string(),
        revision: revision.to_string(),
        output,
        embedding_key,
    }
}

async fn process_derived(
    ctx: &Ctx,
    db: &WorkerDb,
    plan: &Plan,
    task: &TaskMsg,
    derived: &DerivedText,
    seq: u64,
) -> Result<&'static str, DistError> {
    let wanted = &plan.analyzers;
    // The embedding of derived text is keyed by the content it came from, with its source in
    // the analyzer name so a transcript and OCR text of one video do not collide.
    let name = |n: &str| format!("{n}:{}", derived.source);
    let pairs: Vec<(String, String)> = wanted.iter().map(|(n, r)| (name(n), r.clone())).collect();
    let have = ctx.pg.analyses(&derived.content_hash, &pairs).await?.len();
    let reused = have == pairs.len();
    let mut rows = Vec::new();
    if !reused {
        let (stage2, d) = (plan.stage.clone(), derived.clone());
        let processed = tokio::task::spawn_blocking(move || {
            stage2.analyze_text(&d.content_hash, &d.source, &d.text)
        })
        .await
        .map_err(|e| DistError::Io(std::io::Error::other(e)))?;
        for (key, bytes) in processed.blobs {
            ctx.objects.put(&key, bytes).await?;
        }
        rows = processed
            .analyses
            .iter()
            .map(|a| analysis_row(&name(&a.analyzer), &a.version, Some(a.output.clone())))
            .collect();
    }
    db.reports
        .call(ModalityReport {
            job_id: task.job_id.clone(),
            modality: task.modality.clone(),
            error: None,
            analyses: json!(pairs),
            facts: json!({}),
            reused,
            job_hash: None,
            rows_hash: derived.content_hash.clone(),
            rows,
        })
        .await?;
    publish_result(ctx, task, true, seq).await?;
    Ok(if reused { "reused" } else { "ok" })
}
