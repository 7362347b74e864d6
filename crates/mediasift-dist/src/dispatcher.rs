//! `mediasift dispatcher`: reads jobs, checks the source against the allowlist, sniffs the kind
//! from the first bytes and routes: image → vision; audio → audio; video → vision (frames) +
//! audio (soundtrack); text → text. Records which modality results the record waits for.

use std::time::Instant;

use futures::StreamExt;
use mediasift_core::{ErrorKind, MediaKind};
use mediasift_media::{SNIFF_LEN, Sniffed, sniff};

use crate::DistError;
use crate::bus::{StreamKind, fetch, stream_seq};
use crate::context::Ctx;
use crate::messages::{JobMsg, TaskMsg};
use crate::service::Shutdown;
use crate::settle::{Failure, settle};
use crate::source::Source;

pub const STAGE: &str = "dispatcher";

/// The modalities a kind of media goes to.
pub fn route(kind: MediaKind) -> &'static [&'static str] {
    match kind {
        MediaKind::Image => &["vision"],
        MediaKind::Audio => &["audio"],
        MediaKind::Video => &["vision", "audio"],
        MediaKind::Text => &["text"],
        MediaKind::Unknown => &[],
    }
}

pub async fn run(ctx: Ctx, shutdown: Shutdown) -> Result<(), DistError> {
    let consumer = ctx
        .bus
        .consumer(
            StreamKind::Jobs,
            "dispatcher",
            &ctx.bus.jobs_subject(),
            ctx.ack_wait(),
            ctx.cfg.distributed().max_deliver,
            10_000,
        )
        .await?;
    crate::metrics::watch_consumer(consumer.clone(), STAGE, ctx.metrics.clone());
    tracing::info!("Dispatcher running");
    while !shutdown.requested() {
        let batch = tokio::select! {
            b = fetch(&consumer, 256, std::time::Duration::from_secs(1)) => b,
            _ = shutdown.wait() => break,
        };
        futures::stream::iter(batch)
            .for_each_concurrent(32, |msg| {
                let ctx = ctx.clone();
                async move { handle(&ctx, msg).await }
            })
            .await;
    }
    tracing::info!("Dispatcher stopped");
    Ok(())
}

async fn handle(ctx: &Ctx, msg: async_nats::jetstream::Message) {
    let started = Instant::now();
    let job: JobMsg = match serde_json::from_slice(&msg.payload) {
        Ok(j) => j,
        Err(e) => {
            let err = DistError::BadMessage(e.to_string());
            settle(ctx, STAGE, &msg, started, Err(err), "", "").await;
            return;
        }
    };
    let outcome = dispatch(ctx, &job, stream_seq(&msg)).await;
    if let Some((Failure::DeadLettered, err)) =
        settle(ctx, STAGE, &msg, started, outcome, &job.job_id, &job.uri).await
    {
        let status = match err {
            DistError::NotAllowed { .. } => "rejected",
            _ => "failed",
        };
        if let Err(e) = ctx
            .pg
            .mark_failed(&job.job_id, status, err.kind(), &err.to_string())
            .await
        {
            tracing::error!(error = %e, job_id = job.job_id, "Could not record the job's failure");
        }
    }
}

/// `seq` (the job message's stream sequence) goes into the tasks' message ids: a redelivered
/// job publishes no second task, a job retried from the dead-letter stream does.
async fn dispatch(ctx: &Ctx, job: &JobMsg, seq: u64) -> Result<&'static str, DistError> {
    let source = Source::parse(&job.uri)?;
    if !ctx.allow.allows(&source) {
        return Err(DistError::NotAllowed {
            uri: job.uri.clone(),
            roots: ctx.allow.describe(),
        });
    }
    let head = ctx.objects.head_bytes(&source, SNIFF_LEN as u64).await?;
    let kind = match sniff(&head) {
        Sniffed::Media(format) => format.default_kind(),
        Sniffed::Empty => {
            return Err(media(job, ErrorKind::Empty, "empty file (0 bytes)".into()));
        }
        Sniffed::NotMedia(what) => {
            return Err(media(
                job,
                ErrorKind::NotMedia,
                format!("not media: {what}"),
            ));
        }
    };
    let modalities = route(kind);
    if modalities.is_empty() {
        return Err(media(
            job,
            ErrorKind::Unsupported,
            "unrecognised format".into(),
        ));
    }
    let expected: Vec<String> = modalities.iter().map(|m| m.to_string()).collect();
    // The route is recorded before the tasks exist, so fusion always knows what to wait for.
    if !ctx.pg.route(&job.job_id, kind.as_str(), &expected).await? {
        return Ok("duplicate");
    }
    for modality in modalities {
        let task = TaskMsg {
            job_id: job.job_id.clone(),
            uri: job.uri.clone(),
            modality: modality.to_string(),
            derived: None,
        };
        let id = format!("{}:{modality}:{seq}", job.job_id);
        ctx.bus
            .publish(ctx.bus.task_subject(modality), &id, &task)
            .await?;
    }
    Ok("ok")
}

fn media(job: &JobMsg, kind: ErrorKind, message: String) -> DistError {
    DistError::Media {
        uri: job.uri.clone(),
        kind,
        message,
    }
}
