//! `mediasift status [BATCH]`: jobs per state, throughput over the last minute, ETA and the
//! dead-letter count.

use crate::DistError;
use crate::context::Ctx;

#[derive(Debug, Clone, Default)]
pub struct Status {
    pub batch: Option<String>,
    pub by_status: Vec<(String, i64)>,
    pub records: i64,
    pub per_sec: f64,
    pub remaining: i64,
    pub eta_secs: Option<f64>,
    pub dead_letters: u64,
}

pub async fn status(ctx: &Ctx, batch: Option<&str>) -> Result<Status, DistError> {
    let batch_id = match batch {
        Some(b) => Some(
            ctx.pg
                .batch_id(b)
                .await?
                .ok_or_else(|| DistError::Config(format!("no batch named {b:?}")))?,
        ),
        None => None,
    };
    let counts = ctx.pg.status(batch_id.as_deref()).await?;
    let remaining = counts
        .by_status
        .iter()
        .filter(|(s, _)| s == "queued" || s == "dispatched")
        .map(|(_, n)| n)
        .sum();
    let per_sec = counts.finished_last_minute as f64 / 60.0;
    Ok(Status {
        batch: batch_id,
        by_status: counts.by_status,
        records: counts.records,
        per_sec,
        remaining,
        eta_secs: (per_sec > 0.0).then(|| remaining as f64 / per_sec),
        dead_letters: crate::dlq::count(ctx).await?,
    })
}
