//! The distributed-mode commands: migrate, enqueue, dispatcher, worker, fusion, status, dlq.

use std::sync::Arc;

use anyhow::Context as _;
use comfy_table::Table;
use mediasift_dist::{
    Ctx, Modality, Pg, Shutdown, dispatcher, dlq, enqueue, fusion, serve_http, worker,
};
use mediasift_pipeline::{Metrics, ModelSet, Stage};

use crate::cli::{Command, DlqCommand, GlobalArgs};
use crate::context::load_config;

pub async fn run(g: &GlobalArgs, command: Command) -> anyhow::Result<()> {
    let cfg = Arc::new(load_config(g)?);
    let d = cfg.distributed().clone();
    if let Command::Migrate = command {
        let pg = Pg::connect(&d.postgres_url, 2)
            .await
            .with_context(|| format!("cannot connect to Postgres at {}", d.postgres_url))?;
        pg.migrate().await?;
        println!("migrations applied");
        return Ok(());
    }
    let metrics = Metrics::new();
    let registry = metrics.registry.clone();
    let connect = |cfg: Arc<mediasift_core::Config>, conns: u32| {
        let registry = registry.clone();
        async move {
            Ctx::connect(cfg, registry, conns)
                .await
                .context("cannot start the distributed mode (check distributed.nats_url and distributed.postgres_url)")
        }
    };
    match command {
        Command::Enqueue {
            source,
            batch,
            no_progress,
        } => {
            let ctx = connect(cfg.clone(), 4).await?;
            let progress = !no_progress && std::io::IsTerminal::is_terminal(&std::io::stderr());
            let out = enqueue::enqueue(&ctx, &source, batch.as_deref(), progress).await?;
            eprintln!(
                "{} listed, {} published, {} already known",
                out.listed, out.published, out.skipped
            );
            println!("{}", out.batch_id);
            Ok(())
        }
        Command::Dispatcher | Command::Fusion => {
            let ctx = connect(cfg.clone(), 16).await?;
            let shutdown = Shutdown::on_signals();
            serve_http(&d.metrics_addr, ctx.registry.clone(), shutdown.clone()).await?;
            if matches!(command, Command::Dispatcher) {
                dispatcher::run(ctx, shutdown).await?;
            } else {
                fusion::run(ctx, shutdown).await?;
            }
            Ok(())
        }
        Command::Worker {
            modality,
            device,
            concurrency,
        } => {
            let modality = Modality::parse(&modality).context("unknown modality")?;
            let mut raw = modality.stage_config(cfg.raw());
            if let Some(device) = device {
                raw.models.device = device;
            }
            let stage_cfg = Arc::new(raw.validate()?);
            let models = tokio::task::spawn_blocking({
                let c = stage_cfg.clone();
                move || ModelSet::load(&c)
            })
            .await??;
            let tools = mediasift_media::Tools::detect(stage_cfg.video());
            let stage = Stage::new(stage_cfg.clone(), tools, &models, metrics.clone());
            let ctx = connect(stage_cfg, 16).await?;
            let concurrency = match concurrency.unwrap_or(d.concurrency) {
                0 => std::thread::available_parallelism().map_or(2, |n| n.get()),
                n => n,
            };
            let shutdown = Shutdown::on_signals();
            serve_http(&d.metrics_addr, ctx.registry.clone(), shutdown.clone()).await?;
            worker::run(ctx, stage, modality, concurrency, shutdown).await?;
            Ok(())
        }
        Command::Status { batch } => {
            let ctx = connect(cfg.clone(), 2).await?;
            let s = mediasift_dist::status::status(&ctx, batch.as_deref()).await?;
            let mut t = Table::new();
            t.set_header(["state", "jobs"]);
            for (state, n) in &s.by_status {
                t.add_row([state.clone(), n.to_string()]);
            }
            println!("{t}");
            println!("records: {}", s.records);
            println!("rate (last minute): {:.1} jobs/s", s.per_sec);
            match s.eta_secs {
                Some(eta) => println!("remaining: {} (ETA {:.0} s)", s.remaining, eta),
                None => println!("remaining: {}", s.remaining),
            }
            println!("dead letters: {}", s.dead_letters);
            Ok(())
        }
        Command::Dlq { command } => {
            let ctx = connect(cfg.clone(), 2).await?;
            match command {
                DlqCommand::List { limit } => {
                    for l in dlq::list(&ctx, limit).await? {
                        println!("{}", serde_json::to_string(&l.letter)?);
                    }
                }
                DlqCommand::Retry { limit } => {
                    let n = dlq::retry(&ctx, limit).await?;
                    println!("{n} dead letters published again");
                }
                DlqCommand::Purge => {
                    let n = dlq::purge(&ctx).await?;
                    println!("{n} dead letters purged");
                }
            }
            Ok(())
        }
        other => anyhow::bail!("not a distributed command: {other:?}"),
    }
}
