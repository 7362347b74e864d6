//! Metrics of the distributed commands, registered next to the pipeline's in one registry.
//! Labels are bounded: stage (dispatcher, vision, audio, text, fusion), outcome, decision.

use prometheus::{
    HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGaugeVec, Opts, Registry,
};

#[derive(Debug, Clone)]
pub struct DistMetrics {
    pub jobs_enqueued: IntCounter,
    /// Messages handled, by stage and outcome (`ok`, `failed`, `retried`, `reused`, `rejected`).
    pub handled: IntCounterVec,
    pub stage_seconds: HistogramVec,
    pub redeliveries: IntCounterVec,
    pub dead_letters: IntCounterVec,
    pub records: IntCounterVec,
    /// Messages waiting in a consumer / delivered and not yet acknowledged (queue lag).
    pub pending: IntGaugeVec,
    pub ack_pending: IntGaugeVec,
}

fn must<T>(r: prometheus::Result<T>) -> T {
    r.expect("static metric definition")
}

impl DistMetrics {
    pub fn register(registry: &Registry) -> DistMetrics {
        let m = DistMetrics {
            jobs_enqueued: must(IntCounter::new(
                "mediasift_jobs_enqueued_total",
                "Jobs published by enqueue.",
            )),
            handled: must(IntCounterVec::new(
                Opts::new(
                    "mediasift_messages_handled_total",
                    "Jobs, tasks and results handled, by stage and outcome.",
                ),
                &["stage", "outcome"],
            )),
            stage_seconds: must(HistogramVec::new(
                HistogramOpts::new(
                    "mediasift_stage_seconds",
                    "Time to handle one message, by stage.",
                )
                .buckets(vec![
                    0.001, 0.005, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
                    300.0, 1200.0,
                ]),
                &["stage"],
            )),
            redeliveries: must(IntCounterVec::new(
                Opts::new(
                    "mediasift_redeliveries_total",
                    "Messages received again after a failed or unacknowledged delivery.",
                ),
                &["stage"],
            )),
            dead_letters: must(IntCounterVec::new(
                Opts::new(
                    "mediasift_dead_letters_total",
                    "Jobs and tasks sent to the dead-letter stream, by stage.",
                ),
                &["stage"],
            )),
            records: must(IntCounterVec::new(
                Opts::new(
                    "mediasift_records_written_total",
                    "Fused records written, by moderation decision.",
                ),
                &["decision"],
            )),
            pending: must(IntGaugeVec::new(
                Opts::new(
                    "mediasift_consumer_pending",
                    "Messages waiting for a consumer, by stage.",
                ),
                &["stage"],
            )),
            ack_pending: must(IntGaugeVec::new(
                Opts::new(
                    "mediasift_consumer_ack_pending",
                    "Messages delivered and not yet acknowledged, by stage.",
                ),
                &["stage"],
            )),
        };
        for c in [
            Box::new(m.jobs_enqueued.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(m.handled.clone()),
            Box::new(m.stage_seconds.clone()),
            Box::new(m.redeliveries.clone()),
            Box::new(m.dead_letters.clone()),
            Box::new(m.records.clone()),
            Box::new(m.pending.clone()),
            Box::new(m.ack_pending.clone()),
        ] {
            // A second registration (two commands in one process) keeps the first.
            let _ = registry.register(c);
        }
        m
    }
}

/// Keeps the queue-lag gauges of one consumer current.
pub fn watch_consumer(
    mut consumer: async_nats::jetstream::consumer::PullConsumer,
    stage: &'static str,
    metrics: DistMetrics,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            if let Ok(info) = consumer.info().await {
                metrics
                    .pending
                    .with_label_values(&[stage])
                    .set(info.num_pending as i64);
                metrics
                    .ack_pending
                    .with_label_values(&[stage])
                    .set(info.num_ack_pending as i64);
            }
            tokio::time::sleep(std::time::Duration::from_secs(5)).await;
        }
    })
}
