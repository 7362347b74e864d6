//! `mediasift dispatcher`: reads jobs, checks the source against the allowlist, sniffs the kind
//! from the first bytes and routes: image → vision; audio → audio; video → vision (frames) +
//! audio (soundtrack); text → text. Records which modality results the record waits for.

use std::collections::{HashMap, HashSet};
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
        if !batch.is_empty() {
            handle_batch(&ctx, batch).await;
        }
    }
    tracing::info!("Dispatcher stopped");
    Ok(())
}

/// A job ready to be routed.
struct Routed {
    job: JobMsg,
    kind: MediaKind,
    seq: u64,
}

/// Sniffs every job of the batch (concurrently), records all routes in one statement, publishes
/// the tasks with their acknowledgements awaited together, then settles each message.
async fn handle_batch(ctx: &Ctx, batch: Vec<async_nats::jetstream::Message>) {
    let started = Instant::now();
    let prepared: Vec<_> = futures::stream::iter(batch)
        .map(|msg| async move {
            let job = serde_json::from_slice::<JobMsg>(&msg.payload)
                .map_err(|e| DistError::BadMessage(e.to_string()));
            let routed = match job {
                Ok(job) => match prepare(ctx, &job).await {
                    Ok(kind) => Ok(Routed {
                        seq: stream_seq(&msg),
                        job,
                        kind,
                    }),
                    Err(e) => Err((Some(job), e)),
                },
                Err(e) => Err((None, e)),
            };
            (msg, routed)
        })
        .buffer_unordered(32)
        .collect()
        .await;
    let ready: Vec<&Routed> = prepared
        .iter()
        .filter_map(|(_, r)| r.as_ref().ok())
        .collect();
    let ids: Vec<String> = ready.iter().map(|r| r.job.job_id.clone()).collect();
    let kinds: Vec<&str> = ready.iter().map(|r| r.kind.as_str()).collect();
    let expected: Vec<String> = ready.iter().map(|r| route(r.kind).join(",")).collect();
    // The routes are recorded before the tasks exist, so fusion always knows what to wait for.
    let recorded = if ids.is_empty() {
        Ok(HashSet::new())
    } else {
        ctx.pg
            .route_many(&ids, &kinds, &expected)
            .await
            .map_err(|e| e.to_string())
    };
    let mut published: HashMap<String, Result<(), String>> = HashMap::new();
    if let Ok(recorded) = &recorded {
        let mut acks = Vec::new();
        for r in ready.iter().filter(|r| recorded.contains(&r.job.job_id)) {
            for modality in route(r.kind) {
                let task = TaskMsg {
                    job_id: r.job.job_id.clone(),
                    uri: r.job.uri.clone(),
                    modality: modality.to_string(),
                    derived: None,
                };
                // The job message's sequence in the id: a redelivered job publishes no second
                // task, one retried from the dead-letter stream does.
                let id = format!("{}:{modality}:{}", r.job.job_id, r.seq);
                let ack = ctx
                    .bus
                    .publish_start(ctx.bus.task_subject(modality), &id, &task)
                    .await;
                acks.push((r.job.job_id.clone(), ack));
            }
        }
        for (job_id, ack) in acks {
            let done = match ack {
                Ok(fut) => fut.await.map(|_| ()).map_err(|e| e.to_string()),
                Err(e) => Err(e.to_string()),
            };
            let entry = published.entry(job_id).or_insert(Ok(()));
            if entry.is_ok() {
                *entry = done;
            }
        }
    }
    futures::stream::iter(prepared)
        .for_each_concurrent(64, |(msg, routed)| {
            let (recorded, published) = (&recorded, &published);
            async move {
                let (job, outcome) = match routed {
                    Err((job, e)) => (job, Err(e)),
                    Ok(r) => {
                        let outcome = match recorded {
                            Err(e) => Err(DistError::Retry(e.clone())),
                            Ok(set) if !set.contains(&r.job.job_id) => Ok("duplicate"),
                            Ok(_) => match published.get(&r.job.job_id) {
                                Some(Err(e)) => Err(DistError::Nats(e.clone())),
                                _ => Ok("ok"),
                            },
                        };
                        (Some(r.job), outcome)
                    }
                };
                let (job_id, uri) = job
                    .as_ref()
                    .map_or(("", ""), |j| (j.job_id.as_str(), j.uri.as_str()));
                if let Some((Failure::DeadLettered, err)) =
                    settle(ctx, STAGE, &msg, started, outcome, job_id, uri).await
                    && !job_id.is_empty()
                {
                    let status = match err {
                        DistError::NotAllowed { .. } => "rejected",
                        _ => "failed",
                    };
                    if let Err(e) = ctx
                        .pg
                        .mark_failed(job_id, status, err.kind(), &err.to_string())
                        .await
                    {
                        tracing::error!(error = %e, job_id, "Could not record the job's failure");
                    }
                }
            }
        })
        .await;
}

/// Checks the job's source against the allowlist and sniffs its kind from the first bytes.
async fn prepare(ctx: &Ctx, job: &JobMsg) -> Result<MediaKind, DistError> {
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
    if route(kind).is_empty() {
        return Err(media(
            job,
            ErrorKind::Unsupported,
            "unrecognised format".into(),
        ));
    }
    Ok(kind)
}

fn media(job: &JobMsg, kind: ErrorKind, message: String) -> DistError {
    DistError::Media {
        uri: job.uri.clone(),
        kind,
        message,
    }
}
