use std::sync::Arc;

use anyhow::Context as _;
use comfy_table::{Table, presets::UTF8_FULL_CONDENSED};
use mediasift_media::Tools;
use mediasift_pipeline::{Metrics, ModelSet, RunOptions, Stage, Summary, run_embedded};

use crate::cli::{AnalyzeArgs, GlobalArgs};
use crate::context;

pub async fn run(g: &GlobalArgs, args: AnalyzeArgs) -> anyhow::Result<()> {
    let cfg = Arc::new(context::load_config(g)?);
    for p in &args.paths {
        if !p.exists() {
            anyhow::bail!("{} does not exist", p.display());
        }
    }
    let (store, blobs) = context::open_store(&cfg).await?;
    let tools = Tools::detect(cfg.video());
    if tools.ffmpeg.is_none() || tools.ffprobe.is_none() {
        tracing::warn!(
            ffmpeg = %cfg.video().ffmpeg,
            "ffmpeg/ffprobe not found: video files (and Opus audio) will fail with `missing_tool`; install ffmpeg"
        );
    }
    tracing::info!(data = %cfg.store().data_dir.display(), decode_tasks = cfg.decode_tasks, "Starting analysis");
    let models = ModelSet::load(&cfg).context("loading models")?;
    let metrics = Metrics::new();
    let stage = Stage::new(cfg.clone(), tools, &models, metrics.clone());
    let opts = RunOptions {
        inputs: args.paths,
        force: args.force,
        include_hidden: args.hidden,
        progress: !args.no_progress,
    };
    let summary = run_embedded(stage, store.clone(), blobs, opts).await?;
    store.close().await;
    println!("{}", summary_table(&summary));
    if let Some(file) = &args.metrics_file {
        std::fs::write(file, metrics.render())
            .with_context(|| format!("cannot write metrics to {}", file.display()))?;
    }
    Ok(())
}

fn summary_table(s: &Summary) -> String {
    let mut t = Table::new();
    t.load_style(UTF8_FULL_CONDENSED);
    t.set_header([
        "kind",
        "files",
        "analyzed",
        "reused",
        "skipped",
        "failed",
        "most common failures",
    ]);
    let rows = s
        .kinds
        .iter()
        .map(|(k, c)| (k.as_str().to_string(), c.clone()))
        .chain([("total".to_string(), s.total())]);
    for (name, c) in rows {
        let reasons = c
            .top_reasons(3)
            .iter()
            .map(|(r, n)| format!("{r} ×{n}"))
            .collect::<Vec<_>>()
            .join(", ");
        t.add_row([
            name,
            c.files().to_string(),
            c.analyzed.to_string(),
            c.reused.to_string(),
            c.skipped.to_string(),
            c.failed.to_string(),
            reasons,
        ]);
    }
    let secs = s.elapsed.as_secs_f64();
    let total = s.total().files();
    let mut out = format!(
        "{t}\n{total} files in {secs:.1} s ({:.1} files/s)",
        total as f64 / secs.max(1e-3)
    );
    if s.walk_skipped > 0 {
        out.push_str(&format!(
            "; {} entries not walked (unreadable, or symlinks leaving the root)",
            s.walk_skipped
        ));
    }
    out
}
