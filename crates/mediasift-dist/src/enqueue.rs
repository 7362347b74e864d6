//! `mediasift enqueue SRC`: streams the listing of a local directory or an S3 prefix, records
//! one job per file (idempotently) and publishes the new ones, with a progress bar.

use futures::StreamExt;
use indicatif::{ProgressBar, ProgressStyle};

use crate::DistError;
use crate::context::Ctx;
use crate::messages::JobMsg;
use crate::source::Source;

/// Jobs inserted and published per round trip.
const CHUNK: usize = 1000;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Enqueued {
    pub batch_id: String,
    pub listed: u64,
    pub published: u64,
    /// Already known and not waiting to be published (done, failed or in flight).
    pub skipped: u64,
}

/// The id of a batch: stable for a name, so enqueueing the same source twice is one batch.
pub fn batch_id(name: &str) -> String {
    blake3::hash(name.as_bytes()).to_hex()[..16].to_string()
}

/// The id of a job: one per source URI and version.
pub fn job_id(uri: &str, version: &str) -> String {
    let mut h = blake3::Hasher::new();
    h.update(uri.as_bytes());
    h.update(b"\n");
    h.update(version.as_bytes());
    h.finalize().to_hex()[..32].to_string()
}

pub async fn enqueue(
    ctx: &Ctx,
    src: &str,
    batch: Option<&str>,
    progress: bool,
) -> Result<Enqueued, DistError> {
    // A local folder is named by its real absolute path, whatever the caller wrote.
    let root = if src.starts_with("s3://") {
        Source::parse(src)?
    } else {
        Source::Local(std::fs::canonicalize(
            src.strip_prefix("file://").unwrap_or(src),
        )?)
    };
    let name = batch.map_or_else(|| root.uri(), str::to_string);
    let batch_id = batch_id(&name);
    ctx.pg.ensure_batch(&batch_id, &name, &root.uri()).await?;
    let bar = if progress {
        ProgressBar::new_spinner()
    } else {
        ProgressBar::hidden()
    };
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} {pos} listed, {msg} [{elapsed_precise}, {per_sec}]",
        )
        .unwrap_or_else(|_| ProgressStyle::default_spinner()),
    );
    let mut out = Enqueued {
        batch_id: batch_id.clone(),
        ..Default::default()
    };
    let mut listing = ctx.objects.list(&root)?;
    let mut chunk = Vec::with_capacity(CHUNK);
    loop {
        let next = listing.next().await;
        let done = next.is_none();
        if let Some(item) = next {
            match item {
                Ok(l) => chunk.push(l),
                Err(e) => tracing::warn!(error = %e, "Listing entry skipped"),
            }
        }
        if chunk.len() >= CHUNK || (done && !chunk.is_empty()) {
            let n = chunk.len() as u64;
            let published = publish_chunk(ctx, &batch_id, std::mem::take(&mut chunk)).await?;
            out.listed += n;
            out.published += published;
            out.skipped += n - published;
            bar.inc(n);
            bar.set_message(format!(
                "{} published, {} already known",
                out.published, out.skipped
            ));
        }
        if done {
            break;
        }
    }
    bar.finish();
    Ok(out)
}

async fn publish_chunk(
    ctx: &Ctx,
    batch_id: &str,
    chunk: Vec<crate::objects::Listed>,
) -> Result<u64, DistError> {
    let uris: Vec<String> = chunk.iter().map(|l| l.source.uri()).collect();
    let versions: Vec<String> = chunk.iter().map(|l| l.version.clone()).collect();
    let ids: Vec<String> = uris
        .iter()
        .zip(&versions)
        .map(|(u, v)| job_id(u, v))
        .collect();
    let sizes: Vec<i64> = chunk
        .iter()
        .map(|l| i64::try_from(l.size).unwrap_or(i64::MAX))
        .collect();
    let to_publish: std::collections::HashSet<String> = ctx
        .pg
        .insert_jobs(batch_id, &ids, &uris, &versions, &sizes)
        .await?
        .into_iter()
        .collect();
    let subject = ctx.bus.jobs_subject();
    let mut acks = Vec::with_capacity(to_publish.len());
    for (id, uri) in ids.iter().zip(&uris) {
        if !to_publish.contains(id) {
            continue;
        }
        let msg = JobMsg {
            job_id: id.clone(),
            batch_id: batch_id.to_string(),
            uri: uri.clone(),
        };
        acks.push(ctx.bus.publish_start(subject.clone(), id, &msg).await?);
    }
    let n = acks.len() as u64;
    for ack in acks {
        ack.await.map_err(DistError::nats)?;
    }
    ctx.metrics.jobs_enqueued.inc_by(n);
    Ok(n)
}
