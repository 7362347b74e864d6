//! Benchmarks of the distributed mode (need its servers: `scripts/bench/distributed.sh`
//! starts them). Components run as tasks of this process, with the same code as the separate
//! commands; NATS and Postgres are real.
//!
//! - `bench queue`: no analyzers, tiny files: the transport's own cost, enqueue → record.
//! - `bench distributed`: the same media folder through `analyze` (embedded) and through the
//!   dispatcher, the three workers and fusion.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use comfy_table::{Table, presets::UTF8_FULL_CONDENSED};
use mediasift_core::{Config, OcrMode, RawConfig};
use mediasift_dist::{Ctx, Modality, Shutdown, dispatcher, enqueue, fusion, worker};
use mediasift_pipeline::{Metrics, ModelSet, RunOptions, Stage, run_embedded};

use crate::cli::{DistBenchArgs, GlobalArgs, QueueBenchArgs};
use crate::context::load_config;

/// Starts dispatcher, the given workers and fusion; returns their tasks and the stop trigger.
async fn start(
    cfg: &Arc<Config>,
    workers: &[(Modality, usize)],
) -> anyhow::Result<(Vec<tokio::task::JoinHandle<()>>, impl Fn() + use<>)> {
    let (shutdown, trigger) = Shutdown::manual();
    let registry = Metrics::new().registry;
    let mut tasks = Vec::new();
    let ctx = Ctx::connect(cfg.clone(), registry.clone(), 16).await?;
    let (c, s) = (ctx.clone(), shutdown.clone());
    tasks.push(tokio::spawn(async move {
        let _ = dispatcher::run(c, s).await;
    }));
    let (c, s) = (ctx.clone(), shutdown.clone());
    tasks.push(tokio::spawn(async move {
        let _ = fusion::run(c, s).await;
    }));
    for &(modality, concurrency) in workers {
        let stage_cfg = Arc::new(modality.stage_config(cfg.raw()).validate()?);
        let models = {
            let c = stage_cfg.clone();
            tokio::task::spawn_blocking(move || ModelSet::load(&c)).await??
        };
        let tools = mediasift_media::Tools::detect(stage_cfg.video());
        let stage = Stage::new(stage_cfg.clone(), tools, &models, Metrics::new());
        let ctx = Ctx::connect(stage_cfg, registry.clone(), 16).await?;
        let s = shutdown.clone();
        tasks.push(tokio::spawn(async move {
            let _ = worker::run(ctx, stage, modality, concurrency, s).await;
        }));
    }
    Ok((tasks, trigger))
}

/// Waits until every job of `batch` is settled; returns the counts by state.
async fn wait_settled(ctx: &Ctx, batch: &str, n: i64) -> anyhow::Result<Vec<(String, i64)>> {
    loop {
        let s = mediasift_dist::status::status(ctx, Some(batch)).await?;
        let total: i64 = s.by_status.iter().map(|(_, n)| n).sum();
        if total >= n && s.remaining == 0 {
            return Ok(s.by_status);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The configured servers, with a fresh database and stream prefix for this run.
async fn bench_config(
    g: &GlobalArgs,
    tag: &str,
    root: &Path,
    objects: &Path,
) -> anyhow::Result<RawConfig> {
    let mut raw = load_config(g)?.raw().clone();
    let d = &mut raw.distributed;
    let name = format!("bench_{tag}_{}", std::process::id());
    d.postgres_url = mediasift_dist::Pg::fresh_database(&d.postgres_url, &name)
        .await
        .with_context(|| format!("cannot create a benchmark database on {}", d.postgres_url))?;
    d.prefix = name;
    d.allowed_roots = vec![root.display().to_string()];
    d.object_store = objects.display().to_string();
    d.metrics_addr = String::new();
    Ok(raw)
}

pub async fn queue(g: &GlobalArgs, args: QueueBenchArgs) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let root = dir.path().join("jobs");
    std::fs::create_dir_all(&root)?;
    for i in 0..args.jobs {
        std::fs::write(root.join(format!("{i:08}.txt")), format!("job {i}\n"))?;
    }
    let mut raw = bench_config(
        g,
        "queue",
        &root.canonicalize()?,
        &dir.path().join("objects"),
    )
    .await?;
    // No-op analysis: intake only.
    let a = &mut raw.analyzers;
    (a.metadata, a.phash, a.loudness, a.thumbnail) = (false, false, false, false);
    (a.text_embedding, a.tags, a.nsfw, a.transcript) = (false, false, false, false);
    raw.ocr.mode = OcrMode::Never;
    let cfg = Arc::new(raw.validate()?);
    let (tasks, stop) = start(&cfg, &[(Modality::Text, args.concurrency)]).await?;
    let ctx = Ctx::connect(cfg.clone(), Metrics::new().registry, 4).await?;
    let t0 = Instant::now();
    let out = enqueue::enqueue(&ctx, root.to_str().context("utf-8 path")?, None, false).await?;
    let enqueued = t0.elapsed();
    let states = wait_settled(&ctx, &out.batch_id, args.jobs as i64).await?;
    let total = t0.elapsed();
    stop();
    for t in tasks {
        let _ = t.await;
    }
    let n = args.jobs as f64;
    let mut t = Table::new();
    t.load_style(UTF8_FULL_CONDENSED);
    t.set_header([
        "jobs",
        "enqueue s",
        "enqueue jobs/s",
        "enqueue→record s",
        "jobs/s",
        "goal",
        "ratio to goal",
    ]);
    let rate = n / total.as_secs_f64();
    t.add_row([
        args.jobs.to_string(),
        format!("{:.2}", enqueued.as_secs_f64()),
        format!("{:.0}", n / enqueued.as_secs_f64()),
        format!("{:.2}", total.as_secs_f64()),
        format!("{rate:.0}"),
        "2000".into(),
        format!("{:.2}", rate / 2000.0),
    ]);
    println!("{t}");
    println!("job states: {states:?}");
    Ok(())
}

/// `mediasift analyze INPUT` with `raw`, its store and blobs under `data`: wall time and summary.
pub async fn analyze(
    mut raw: RawConfig,
    data: &Path,
    input: &Path,
) -> anyhow::Result<(Duration, mediasift_pipeline::Summary)> {
    raw.store.data_dir = data.join("store");
    let cfg = Arc::new(raw.validate()?);
    let models = ModelSet::load(&cfg)?;
    let stage = Stage::new(
        cfg.clone(),
        mediasift_media::Tools::detect(cfg.video()),
        &models,
        Metrics::new(),
    );
    drop(models);
    let store = mediasift_store::SqliteStore::open(&cfg.store().data_dir).await?;
    let blobs = mediasift_store::BlobStore::local(&data.join("blobs"))?;
    let t0 = Instant::now();
    let opts = RunOptions {
        inputs: vec![input.to_path_buf()],
        ..Default::default()
    };
    let summary = run_embedded(stage, store, blobs, opts).await?;
    Ok((t0.elapsed(), summary))
}

pub async fn distributed(g: &GlobalArgs, args: DistBenchArgs) -> anyhow::Result<()> {
    let input = args
        .input
        .canonicalize()
        .with_context(|| format!("{} does not exist", args.input.display()))?;
    let dir = tempfile::tempdir()?;
    let mut files = 0usize;
    mediasift_pipeline::walk(
        std::slice::from_ref(&input),
        &mediasift_pipeline::WalkOptions::default(),
        |_| {
            files += 1;
            true
        },
    );
    // Embedded.
    let raw = bench_config(g, "model", &input, &dir.path().join("objects")).await?;
    let (embedded, _) = analyze(raw.clone(), &dir.path().join("embedded"), &input).await?;
    let cfg = Arc::new(raw.validate()?);
    // Distributed: one worker per modality, one task per core each.
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    let workers = [
        (Modality::Vision, cores),
        (Modality::Audio, cores),
        (Modality::Text, cores),
    ];
    let (tasks, stop) = start(&cfg, &workers).await?;
    let ctx = Ctx::connect(cfg.clone(), Metrics::new().registry, 4).await?;
    let t0 = Instant::now();
    let out = enqueue::enqueue(&ctx, input.to_str().context("utf-8 path")?, None, false).await?;
    let states = wait_settled(&ctx, &out.batch_id, files as i64).await?;
    let distributed = t0.elapsed();
    stop();
    for t in tasks {
        let _ = t.await;
    }
    let mut t = Table::new();
    t.load_style(UTF8_FULL_CONDENSED);
    t.set_header(["mode", "files", "wall s", "files/s", "vs embedded"]);
    let fps = |d: Duration| files as f64 / d.as_secs_f64();
    t.add_row([
        "embedded (analyze)".to_string(),
        files.to_string(),
        format!("{:.1}", embedded.as_secs_f64()),
        format!("{:.2}", fps(embedded)),
        "1.00".into(),
    ]);
    t.add_row([
        "distributed".to_string(),
        files.to_string(),
        format!("{:.1}", distributed.as_secs_f64()),
        format!("{:.2}", fps(distributed)),
        format!("{:.2}", fps(distributed) / fps(embedded)),
    ]);
    println!("{t}");
    println!("job states: {states:?} (goal: distributed >= 0.90 of embedded)");
    Ok(())
}
