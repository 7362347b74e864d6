//! `mediasift dlq list|retry|purge`: the dead-letter stream, where every job or task that will
//! not be retried lies with its reason.

use crate::DistError;
use crate::bus::StreamKind;
use crate::context::Ctx;
use crate::messages::DeadLetter;

/// A dead letter and its sequence in the stream.
#[derive(Debug, Clone)]
pub struct Letter {
    pub sequence: u64,
    pub letter: DeadLetter,
}

async fn stream(ctx: &Ctx) -> Result<async_nats::jetstream::stream::Stream, DistError> {
    ctx.bus
        .js
        .get_stream(ctx.bus.stream_name(StreamKind::Dlq))
        .await
        .map_err(DistError::nats)
}

/// Up to `limit` dead letters, oldest first.
pub async fn list(ctx: &Ctx, limit: usize) -> Result<Vec<Letter>, DistError> {
    let mut s = stream(ctx).await?;
    let state = s.info().await.map_err(DistError::nats)?.state.clone();
    let mut out = Vec::new();
    if state.messages == 0 {
        return Ok(out);
    }
    for seq in state.first_sequence..=state.last_sequence {
        if out.len() >= limit {
            break;
        }
        // Deleted sequences (retried letters) are gaps.
        let Ok(raw) = s.get_raw_message(seq).await else {
            continue;
        };
        match serde_json::from_slice::<DeadLetter>(&raw.payload) {
            Ok(letter) => out.push(Letter {
                sequence: seq,
                letter,
            }),
            Err(e) => tracing::warn!(seq, error = %e, "Unreadable dead letter"),
        }
    }
    Ok(out)
}

pub async fn count(ctx: &Ctx) -> Result<u64, DistError> {
    let mut s = stream(ctx).await?;
    Ok(s.info().await.map_err(DistError::nats)?.state.messages)
}

/// Publishes each dead letter's message again (a fresh message id) and removes the letter.
/// The job goes back to the state that stage expects.
pub async fn retry(ctx: &Ctx, limit: usize) -> Result<usize, DistError> {
    let s = stream(ctx).await?;
    let letters = list(ctx, limit).await?;
    for l in &letters {
        let d = &l.letter;
        if d.subject.is_empty() || d.payload.is_null() {
            continue;
        }
        ctx.pg.reopen(&d.job_id, &d.stage).await?;
        let id = format!("{}:retry:{}", d.job_id, l.sequence);
        ctx.bus.publish(d.subject.clone(), &id, &d.payload).await?;
        s.delete_message(l.sequence)
            .await
            .map_err(DistError::nats)?;
    }
    Ok(letters.len())
}

pub async fn purge(ctx: &Ctx) -> Result<u64, DistError> {
    let s = stream(ctx).await?;
    let r = s.purge().await.map_err(DistError::nats)?;
    Ok(r.purged)
}
