//! `mediasift fusion`: when every expected modality result of a job is in — or the missing ones
//! failed or timed out — joins them into the fused record: moderation decision with reasons,
//! all text, languages, labels, a fused embedding and, for video, a timeline aligning frame
//! labels with transcript segments. A late result rewrites the record.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::{Duration, Instant};

use futures::StreamExt;
use mediasift_store::npy;
use serde_json::{Value, json};

use crate::DistError;
use crate::bus::{StreamKind, fetch};
use crate::context::Ctx;
use crate::messages::ResultMsg;
use crate::pg::{Job, RecordWrite, StoredRow, outputs_for};
use crate::policy::{Evidence, decide};
use crate::service::Shutdown;
use crate::settle::settle;

pub const STAGE: &str = "fusion";
/// Bumped when the fused record's layout or the fused embedding changes.
pub const FUSION_VERSION: &str = "1";
/// Tags at or above this score become record labels.
const LABEL_MIN_SCORE: f64 = 0.1;
/// Zero-shot labels at or above this probability become record labels.
const CLIP_LABEL_MIN_PROB: f64 = 0.3;

pub async fn run(ctx: Ctx, shutdown: Shutdown) -> Result<(), DistError> {
    let consumer = ctx
        .bus
        .consumer(
            StreamKind::Results,
            "fusion",
            &format!("{}.results.>", ctx.cfg.distributed().prefix),
            ctx.ack_wait(),
            ctx.cfg.distributed().max_deliver,
            10_000,
        )
        .await?;
    crate::metrics::watch_consumer(consumer.clone(), STAGE, ctx.metrics.clone());
    let sweeper = tokio::spawn(sweep(ctx.clone(), shutdown.clone()));
    tracing::info!("Fusion running");
    while !shutdown.requested() {
        let batch = tokio::select! {
            b = fetch(&consumer, 256, Duration::from_secs(1)) => b,
            _ = shutdown.wait() => break,
        };
        if batch.is_empty() {
            continue;
        }
        let started = Instant::now();
        let parsed: Vec<(async_nats::jetstream::Message, Option<String>)> = batch
            .into_iter()
            .map(|m| {
                let id = serde_json::from_slice::<ResultMsg>(&m.payload)
                    .ok()
                    .map(|r| r.job_id);
                (m, id)
            })
            .collect();
        let mut ids: Vec<String> = parsed.iter().filter_map(|(_, id)| id.clone()).collect();
        ids.sort();
        ids.dedup();
        let mut fused = fuse_many(&ctx, &ids, false)
            .await
            .map_err(|e| e.to_string());
        // One outcome per job; a second result of the same job in this batch was covered by it.
        let settled: Vec<_> = parsed
            .into_iter()
            .map(|(msg, id)| {
                let outcome = match (&id, &mut fused) {
                    (None, _) => Err(DistError::BadMessage("not a result message".into())),
                    (Some(_), Err(e)) => Err(DistError::Retry(e.clone())),
                    (Some(id), Ok(map)) => map.remove(id).unwrap_or(Ok("ok")),
                };
                (msg, id.unwrap_or_default(), outcome)
            })
            .collect();
        futures::stream::iter(settled)
            .for_each_concurrent(64, |(msg, job, outcome)| {
                let ctx = ctx.clone();
                async move {
                    settle(&ctx, STAGE, &msg, started, outcome, &job, "").await;
                }
            })
            .await;
    }
    sweeper.abort();
    tracing::info!("Fusion stopped");
    Ok(())
}

/// Jobs whose results are overdue get a partial record.
async fn sweep(ctx: Ctx, shutdown: Shutdown) {
    let timeout = ctx.cfg.distributed().fusion_timeout_secs;
    let every = Duration::from_secs((timeout / 10).clamp(1, 60));
    while !shutdown.requested() {
        tokio::time::sleep(every).await;
        let overdue = match ctx.pg.overdue_jobs(timeout).await {
            Ok(ids) if ids.is_empty() => continue,
            Ok(ids) => fuse_many(&ctx, &ids, true).await,
            Err(e) => Err(e),
        };
        match overdue {
            Ok(outcomes) => {
                for (job_id, outcome) in outcomes {
                    if let Err(e) = outcome {
                        tracing::warn!(job_id, error = %e, "Partial record failed");
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, "Overdue-job sweep failed"),
        }
    }
}

/// A job whose record can be written now.
struct Ready {
    job: Job,
    results: Vec<crate::pg::ModalityResult>,
    missing: Vec<String>,
}

/// Writes the record of each job of `ids` whose results are complete (every one with `force`):
/// one read of the jobs with their results and one of their analyses for the whole batch,
/// records then built and written concurrently. An error of the batch reads is returned as a
/// whole; per-job outcomes (labels for metrics) are in the map.
pub async fn fuse_many(
    ctx: &Ctx,
    ids: &[String],
    force: bool,
) -> Result<HashMap<String, Result<&'static str, DistError>>, DistError> {
    let mut out: HashMap<String, Result<&'static str, DistError>> = HashMap::new();
    let mut ready = Vec::new();
    for (job, results) in ctx.pg.jobs_with_results(ids).await? {
        if job.status == "rejected" || job.expected.is_empty() {
            out.insert(job.id.clone(), Ok("skipped"));
            continue;
        }
        let reported: HashSet<&str> = results.iter().map(|r| r.modality.as_str()).collect();
        let missing: Vec<String> = job
            .expected
            .iter()
            .filter(|m| !reported.contains(m.as_str()))
            .cloned()
            .collect();
        if !missing.is_empty() && !force {
            out.insert(job.id.clone(), Ok("waiting"));
            continue;
        }
        if !results.iter().any(|r| r.ok) {
            // Nothing usable: the job failed, for the reasons its modalities gave.
            let why: Vec<String> = results
                .iter()
                .map(|r| {
                    format!(
                        "{}: {}",
                        r.modality,
                        r.error.as_deref().unwrap_or("no result")
                    )
                })
                .chain(missing.iter().map(|m| format!("{m}: timed out")))
                .collect();
            let kind = results
                .iter()
                .find_map(|r| r.error_kind.clone())
                .unwrap_or_else(|| "timeout".into());
            let done = ctx
                .pg
                .mark_failed(&job.id, "failed", &kind, &why.join("; "))
                .await
                .map(|()| "failed");
            out.insert(job.id.clone(), done);
            continue;
        }
        ready.push(Ready {
            job,
            results,
            missing,
        });
    }
    let hashes: Vec<String> = ready
        .iter()
        .filter_map(|r| r.job.content_hash.clone())
        .collect();
    let stored = if hashes.is_empty() {
        HashMap::new()
    } else {
        ctx.pg.analyses_of(&hashes).await?
    };
    let written: Vec<(String, Result<&'static str, DistError>)> = futures::stream::iter(ready)
        .map(|r| {
            let rows = r
                .job
                .content_hash
                .as_ref()
                .and_then(|h| stored.get(h))
                .map_or(&[][..], Vec::as_slice);
            async move {
                let id = r.job.id.clone();
                (id, write(ctx, r, rows).await)
            }
        })
        .buffer_unordered(16)
        .collect()
        .await;
    out.extend(written);
    Ok(out)
}

async fn write(ctx: &Ctx, r: Ready, stored: &[StoredRow]) -> Result<&'static str, DistError> {
    let ok: Vec<_> = r.results.iter().filter(|m| m.ok).collect();
    let mut missing = r.missing;
    missing.extend(
        r.results
            .iter()
            .filter(|m| !m.ok)
            .map(|m| m.modality.clone()),
    );
    let outputs = select_outputs(&ok, stored);
    let record = build(ctx, &r.job, &ok, missing, outputs).await?;
    ctx.pg.upsert_record(&r.job, &record).await?;
    ctx.metrics
        .records
        .with_label_values(&[record.decision.as_str()])
        .inc();
    Ok(if record.partial { "partial" } else { "ok" })
}

/// The stored outputs the modality results stand for.
fn select_outputs(
    ok: &[&crate::pg::ModalityResult],
    stored: &[StoredRow],
) -> BTreeMap<String, Value> {
    let mut pairs: HashSet<(&str, &str)> = HashSet::new();
    for r in ok {
        for p in r.analyses.as_array().into_iter().flatten() {
            if let (Some(n), Some(v)) = (p[0].as_str(), p[1].as_str()) {
                pairs.insert((n, v));
            }
        }
    }
    outputs_for(&pairs, stored)
        .map(|(a, v)| (a.to_string(), v.clone()))
        .collect()
}

async fn build(
    ctx: &Ctx,
    job: &Job,
    ok: &[&crate::pg::ModalityResult],
    missing: Vec<String>,
    outputs: BTreeMap<String, Value>,
) -> Result<RecordWrite, DistError> {
    let hash = job.content_hash.clone().unwrap_or_default();
    // The decoders' kind beats the dispatcher's sniff (an M4A is audio in an MP4 container).
    let kind = ok
        .iter()
        .find_map(|r| r.facts["kind"].as_str())
        .map(str::to_string)
        .or_else(|| job.kind.clone());
    let get = |name: &str| outputs.get(name);

    let mut texts: Vec<(&str, &str)> = Vec::new();
    for (source, analyzer) in [("transcript", "transcript"), ("ocr", "ocr")] {
        if let Some(t) = get(analyzer).and_then(|v| v["text"].as_str())
            && !t.trim().is_empty()
        {
            texts.push((source, t));
        }
    }
    let mut labels: Vec<&str> = get("tags")
        .and_then(Value::as_array)
        .map(|tags| {
            tags.iter()
                .filter(|t| t["score"].as_f64().unwrap_or(0.0) >= LABEL_MIN_SCORE)
                .filter_map(|t| t["label"].as_str())
                .collect()
        })
        .unwrap_or_default();
    // CLIP zero-shot labels (the configured policy labels) join the ImageNet tags.
    for l in get("clip")
        .and_then(|c| c["labels"].as_array())
        .into_iter()
        .flatten()
    {
        if l["prob"].as_f64().unwrap_or(0.0) >= CLIP_LABEL_MIN_PROB
            && let Some(label) = l["label"].as_str()
            && !labels.contains(&label)
        {
            labels.push(label);
        }
    }
    let languages: Vec<String> = get("transcript")
        .and_then(|t| t["language"].as_str())
        .map(|l| vec![l.to_string()])
        .unwrap_or_default();
    let nsfw = get("nsfw").and_then(|v| v["score"].as_f64());
    let evidence = Evidence {
        nsfw,
        texts: texts.clone(),
        labels: labels.clone(),
        missing: missing.clone(),
    };
    let (decision, reasons) = decide(ctx.cfg.moderation(), &evidence);

    // Embeddings: the image feature, and the pooled text vector of whichever text there is.
    let image = load_row0(ctx, get("image_embedding")).await?;
    let text_key = [
        "text_embedding",
        "text_embedding:transcript",
        "text_embedding:ocr",
    ]
    .into_iter()
    .find_map(get);
    let text = load_row0(ctx, text_key).await?;
    let clip = load_row0(ctx, get("clip")).await?;
    let f = ctx.cfg.fusion();
    let fused = fuse_vectors(&[
        (image.as_deref(), f.image_weight),
        (text.as_deref(), f.text_weight),
        (clip.as_deref(), f.clip_weight),
    ]);
    let fused_key = match &fused {
        Some(v) => {
            let key = format!("embeddings/fused/v{FUSION_VERSION}/{hash}.npy");
            ctx.objects
                .put(&key, npy::encode_f32(1, v.len(), v))
                .await?;
            Some(key)
        }
        None => None,
    };
    let timeline = timeline(get("frame_tags"), get("transcript"));
    let all_text = texts
        .iter()
        .map(|(_, t)| t.trim())
        .collect::<Vec<_>>()
        .join("\n");
    let record = json!({
        "job_id": job.id,
        "batch_id": job.batch_id,
        "source_uri": job.source_uri,
        "content_hash": job.content_hash,
        "kind": kind,
        "decision": decision.as_str(),
        "reasons": reasons,
        "partial": !missing.is_empty(),
        "missing": missing,
        "languages": languages,
        "labels": labels,
        "text": all_text,
        "timeline": timeline,
        "fused_embedding": fused_key.as_ref().map(|k| json!({
            "key": k,
            "dims": fused.as_ref().map_or(0, Vec::len),
            "parts": { "image": image.is_some(), "text": text.is_some(), "clip": clip.is_some() },
        })),
        "analyses": outputs,
        "fusion_version": FUSION_VERSION,
    });
    Ok(RecordWrite {
        kind,
        decision: decision.as_str().to_string(),
        reasons: json!(reasons),
        partial: !missing.is_empty(),
        missing,
        text: all_text,
        languages,
        labels: labels.iter().map(|s| s.to_string()).collect(),
        record,
        fused_key,
        image_embedding: image.filter(|v| v.len() == 1280),
        text_embedding: text.filter(|v| v.len() == 384),
        clip_embedding: clip.filter(|v| v.len() == 512),
    })
}

/// Row 0 of the `.npy` an analysis points at (`key`).
async fn load_row0(ctx: &Ctx, analysis: Option<&Value>) -> Result<Option<Vec<f32>>, DistError> {
    let Some(key) = analysis.and_then(|a| a["key"].as_str()) else {
        return Ok(None);
    };
    let bytes = ctx.objects.get(key).await?;
    let (_, cols, data) = npy::decode_f32(&bytes)
        .ok_or_else(|| DistError::BadMessage(format!("{key}: not a float32 .npy")))?;
    Ok(Some(data[..cols].to_vec()))
}

/// Each present vector L2-normalised and scaled by its weight, concatenated, normalised again.
pub fn fuse_vectors(parts: &[(Option<&[f32]>, f64)]) -> Option<Vec<f32>> {
    let mut out = Vec::new();
    for (v, w) in parts {
        let Some(v) = v else { continue };
        if *w <= 0.0 {
            continue;
        }
        let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-12);
        out.extend(v.iter().map(|x| x / norm * *w as f32));
    }
    let norm = out.iter().map(|x| x * x).sum::<f32>().sqrt();
    if out.is_empty() || norm == 0.0 {
        return None;
    }
    out.iter_mut().for_each(|x| *x /= norm);
    Some(out)
}

/// For a video: each transcript segment with the labels of the frames sampled during it (the
/// nearest frame when none falls inside).
fn timeline(frames: Option<&Value>, transcript: Option<&Value>) -> Value {
    let (Some(frames), Some(segments)) = (
        frames.and_then(|f| f["frames"].as_array()),
        transcript.and_then(|t| t["segments"].as_array()),
    ) else {
        return Value::Null;
    };
    let frame_time = |f: &Value| f["time_secs"].as_f64().unwrap_or(0.0);
    let entries: Vec<Value> = segments
        .iter()
        .map(|s| {
            let (start, end) = (
                s["start"].as_f64().unwrap_or(0.0),
                s["end"].as_f64().unwrap_or(0.0),
            );
            let mut inside: Vec<&Value> = frames
                .iter()
                .filter(|f| (start..=end).contains(&frame_time(f)))
                .collect();
            if inside.is_empty() {
                let mid = (start + end) / 2.0;
                inside.extend(frames.iter().min_by(|a, b| {
                    (frame_time(a) - mid)
                        .abs()
                        .total_cmp(&(frame_time(b) - mid).abs())
                }));
            }
            let mut labels: Vec<&str> = Vec::new();
            for f in inside {
                for t in f["tags"].as_array().into_iter().flatten() {
                    if let Some(l) = t["label"].as_str()
                        && !labels.contains(&l)
                    {
                        labels.push(l);
                    }
                }
            }
            json!({ "start": start, "end": end, "text": s["text"], "labels": labels })
        })
        .collect();
    json!(entries)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fused_vector_is_unit_length_and_weighted() {
        let a = [3.0f32, 4.0];
        let b = [0.0f32, 2.0];
        let v = fuse_vectors(&[(Some(&a), 1.0), (Some(&b), 2.0)]).unwrap();
        let norm: f32 = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-6);
        // Parts normalised: (0.6, 0.8) and 2·(0, 1), then the whole by √5.
        let s = 5f32.sqrt();
        for (got, want) in v.iter().zip([0.6 / s, 0.8 / s, 0.0, 2.0 / s]) {
            assert!((got - want).abs() < 1e-6, "{v:?}");
        }
        assert_eq!(fuse_vectors(&[(None, 1.0)]), None);
    }

    #[test]
    fn timeline_aligns_frames_with_segments() {
        let frames = json!({ "frames": [
            { "time_secs": 0.0, "tags": [{ "label": "cat" }] },
            { "time_secs": 4.0, "tags": [{ "label": "dog" }] },
            { "time_secs": 20.0, "tags": [{ "label": "car" }] },
        ]});
        let transcript = json!({ "segments": [
            { "start": 0.0, "end": 5.0, "text": "a" },
            { "start": 9.0, "end": 12.0, "text": "b" },
        ]});
        let t = timeline(Some(&frames), Some(&transcript));
        assert_eq!(t[0]["labels"], json!(["cat", "dog"]));
        // No frame inside 9..12: the nearest one (4 s) stands for it.
        assert_eq!(t[1]["labels"], json!(["dog"]));
    }
}
