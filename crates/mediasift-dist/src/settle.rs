//! The end of every message: acknowledged when handled, negatively acknowledged with backoff
//! after a transient error, dead-lettered (with its reason) after a permanent error or the last
//! delivery.

use std::time::Instant;

use async_nats::jetstream::{AckKind, Message};

use crate::DistError;
use crate::bus::deliveries;
use crate::context::Ctx;
use crate::messages::DeadLetter;

/// What became of a message that failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    Retried,
    DeadLettered,
}

/// Acknowledges `msg` after `outcome`; on error retries or dead-letters it. Returns what was
/// done on error so the caller can record the job's fate.
pub async fn settle(
    ctx: &Ctx,
    stage: &'static str,
    msg: &Message,
    started: Instant,
    outcome: Result<&'static str, DistError>,
    job_id: &str,
    uri: &str,
) -> Option<(Failure, DistError)> {
    let m = &ctx.metrics;
    m.stage_seconds
        .with_label_values(&[stage])
        .observe(started.elapsed().as_secs_f64());
    let delivered = deliveries(msg);
    if delivered > 1 {
        m.redeliveries.with_label_values(&[stage]).inc();
    }
    let err = match outcome {
        Ok(label) => {
            m.handled.with_label_values(&[stage, label]).inc();
            ack(msg, AckKind::Ack).await;
            return None;
        }
        Err(e) => e,
    };
    let max = ctx.cfg.distributed().max_deliver;
    if err.is_transient() && delivered < max {
        let delay = ctx.backoff(delivered);
        tracing::warn!(stage, job_id, uri, error = %err, delivered, retry_in = ?delay,
            "Transient error; will retry");
        m.handled.with_label_values(&[stage, "retried"]).inc();
        ack(msg, AckKind::Nak(Some(delay))).await;
        return Some((Failure::Retried, err));
    }
    tracing::warn!(stage, job_id, uri, error = %err, delivered, "Dead-lettered");
    let letter = DeadLetter {
        job_id: job_id.to_string(),
        uri: uri.to_string(),
        stage: stage.to_string(),
        error_kind: err.kind().to_string(),
        reason: err.to_string(),
        deliveries: delivered,
        subject: msg.subject.to_string(),
        payload: serde_json::from_slice(&msg.payload).unwrap_or(serde_json::Value::Null),
    };
    // One letter per failed message: a retried and failed-again message is a new sequence.
    let seq = crate::bus::stream_seq(msg);
    let id = format!("{job_id}:{stage}:{seq}");
    if let Err(e) = ctx
        .bus
        .publish(ctx.bus.dlq_subject(stage), &id, &letter)
        .await
    {
        // Not acknowledged: the message comes back and the dead-lettering is tried again.
        tracing::error!(error = %e, "Could not publish to the dead-letter stream");
        return Some((Failure::Retried, err));
    }
    m.dead_letters.with_label_values(&[stage]).inc();
    m.handled.with_label_values(&[stage, "failed"]).inc();
    ack(msg, AckKind::Term).await;
    Some((Failure::DeadLettered, err))
}

async fn ack(msg: &Message, kind: AckKind) {
    if let Err(e) = msg.ack_with(kind).await {
        // The server redelivers after ack_wait; handlers are idempotent.
        tracing::warn!(error = %e, "Acknowledgement failed");
    }
}

/// Tells the server a long task is still being worked on, every `every`, until dropped.
pub fn heartbeat(msg: &Message, every: std::time::Duration) -> tokio::task::JoinHandle<()> {
    let msg = msg.clone();
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(every).await;
            if let Err(e) = msg.ack_with(AckKind::Progress).await {
                tracing::debug!(error = %e, "In-progress heartbeat failed");
            }
        }
    })
}
