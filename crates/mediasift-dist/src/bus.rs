//! NATS JetStream: the streams and consumers (created or updated idempotently at start-up),
//! idempotent publishing, and pulling with reconnect-tolerant fetch loops.
//!
//! Works on NATS 2.9 as well as current servers: one `filter_subject` per consumer, no
//! key-value buckets, no stream metadata.

use std::time::Duration;

use async_nats::HeaderMap;
use async_nats::jetstream::{self, consumer, stream};
use serde::Serialize;

use crate::DistError;

/// Streams, by role.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamKind {
    Jobs,
    Tasks,
    Results,
    Dlq,
}

impl StreamKind {
    fn suffix(self) -> &'static str {
        match self {
            StreamKind::Jobs => "JOBS",
            StreamKind::Tasks => "TASKS",
            StreamKind::Results => "RESULTS",
            StreamKind::Dlq => "DLQ",
        }
    }
}

/// A connection to NATS with the mediasift subjects under `prefix`.
#[derive(Debug, Clone)]
pub struct Bus {
    pub client: async_nats::Client,
    pub js: jetstream::Context,
    prefix: String,
}

impl Bus {
    /// Connects, retrying the first connection and reconnecting forever after.
    pub async fn connect(url: &str, prefix: &str) -> Result<Bus, DistError> {
        if prefix.is_empty()
            || !prefix
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        {
            return Err(DistError::Config(format!(
                "distributed.prefix {prefix:?}: letters, digits, '_' and '-' only"
            )));
        }
        let client = async_nats::ConnectOptions::new()
            .name(format!("mediasift-{}", std::process::id()))
            .retry_on_initial_connect()
            .max_reconnects(None)
            .connection_timeout(Duration::from_secs(5))
            .event_callback(|event| async move {
                tracing::info!(%event, "NATS connection event");
            })
            .connect(url)
            .await
            .map_err(DistError::nats)?;
        let js = jetstream::new(client.clone());
        Ok(Bus {
            client,
            js,
            prefix: prefix.to_string(),
        })
    }

    pub fn stream_name(&self, kind: StreamKind) -> String {
        format!(
            "{}_{}",
            self.prefix.to_uppercase().replace('-', "_"),
            kind.suffix()
        )
    }

    pub fn jobs_subject(&self) -> String {
        format!("{}.jobs", self.prefix)
    }
    pub fn task_subject(&self, modality: &str) -> String {
        // `text:transcript` travels on the text subject.
        let base = modality.split(':').next().unwrap_or(modality);
        format!("{}.tasks.{base}", self.prefix)
    }
    pub fn result_subject(&self, modality: &str) -> String {
        let base = modality.split(':').next().unwrap_or(modality);
        format!("{}.results.{base}", self.prefix)
    }
    pub fn dlq_subject(&self, stage: &str) -> String {
        format!("{}.dlq.{stage}", self.prefix)
    }

    /// Creates or updates the four streams. Jobs, tasks and results are work queues (a message
    /// is gone once acknowledged); the dead-letter stream keeps everything until purged.
    pub async fn ensure_streams(&self) -> Result<(), DistError> {
        let dedupe = Duration::from_secs(120);
        for (kind, subject, retention) in [
            (
                StreamKind::Jobs,
                self.jobs_subject(),
                stream::RetentionPolicy::WorkQueue,
            ),
            (
                StreamKind::Tasks,
                format!("{}.tasks.>", self.prefix),
                stream::RetentionPolicy::WorkQueue,
            ),
            (
                StreamKind::Results,
                format!("{}.results.>", self.prefix),
                stream::RetentionPolicy::WorkQueue,
            ),
            (
                StreamKind::Dlq,
                format!("{}.dlq.>", self.prefix),
                stream::RetentionPolicy::Limits,
            ),
        ] {
            self.js
                .create_or_update_stream(stream::Config {
                    name: self.stream_name(kind),
                    subjects: vec![subject],
                    retention,
                    storage: stream::StorageType::File,
                    duplicate_window: dedupe,
                    ..Default::default()
                })
                .await
                .map_err(DistError::nats)?;
        }
        Ok(())
    }

    /// A durable pull consumer with explicit acks and one subject filter.
    pub async fn consumer(
        &self,
        kind: StreamKind,
        durable: &str,
        filter: &str,
        ack_wait: Duration,
        max_deliver: i64,
        max_ack_pending: i64,
    ) -> Result<consumer::PullConsumer, DistError> {
        let stream = self
            .js
            .get_stream(self.stream_name(kind))
            .await
            .map_err(DistError::nats)?;
        let config = consumer::pull::Config {
            durable_name: Some(durable.to_string()),
            filter_subject: filter.to_string(),
            ack_policy: consumer::AckPolicy::Explicit,
            ack_wait,
            max_deliver,
            max_ack_pending,
            ..Default::default()
        };
        // Create, or update an existing durable with other settings in place: deleting it
        // would drop its delivery state and redeliver every task other workers hold.
        match stream.create_consumer(config.clone()).await {
            Ok(c) => Ok(c),
            Err(create) => stream
                .update_consumer(config)
                .await
                .map_err(|update| DistError::Nats(format!("{create}; update: {update}"))),
        }
    }

    /// Publishes JSON and waits for the stream's acknowledgement. `msg_id` de-duplicates.
    pub async fn publish<T: Serialize>(
        &self,
        subject: String,
        msg_id: &str,
        body: &T,
    ) -> Result<(), DistError> {
        self.publish_start(subject, msg_id, body)
            .await?
            .await
            .map_err(DistError::nats)?;
        Ok(())
    }

    /// Publishes without waiting for the acknowledgement (await the returned future later):
    /// enqueueing keeps many publishes in flight.
    pub async fn publish_start<T: Serialize>(
        &self,
        subject: String,
        msg_id: &str,
        body: &T,
    ) -> Result<jetstream::context::PublishAckFuture, DistError> {
        let payload = serde_json::to_vec(body).map_err(|e| DistError::BadMessage(e.to_string()))?;
        let mut headers = HeaderMap::new();
        headers.insert("Nats-Msg-Id", msg_id);
        self.js
            .publish_with_headers(subject, headers, payload.into())
            .await
            .map_err(DistError::nats)
    }
}

/// Fetches up to `max` messages, waiting at most `wait` for the first. Errors (a server
/// restart) are logged and yield an empty batch after a pause, so loops simply go on.
pub async fn fetch(
    consumer: &consumer::PullConsumer,
    max: usize,
    wait: Duration,
) -> Vec<jetstream::Message> {
    use futures::StreamExt;
    let batch = consumer
        .fetch()
        .max_messages(max)
        .expires(wait)
        .messages()
        .await;
    let mut batch = match batch {
        Ok(b) => b,
        Err(e) => {
            tracing::warn!(error = %e, "fetch failed; retrying");
            tokio::time::sleep(Duration::from_millis(500)).await;
            return Vec::new();
        }
    };
    let mut out = Vec::new();
    while let Some(m) = batch.next().await {
        match m {
            Ok(m) => out.push(m),
            Err(e) => {
                tracing::warn!(error = %e, "fetch interrupted");
                break;
            }
        }
    }
    out
}

/// How many times this message has been delivered (1 = first time).
pub fn deliveries(msg: &jetstream::Message) -> i64 {
    msg.info().map(|i| i.delivered).unwrap_or(1)
}

/// The message's sequence in its stream (0 when unknown).
pub fn stream_seq(msg: &jetstream::Message) -> u64 {
    msg.info().map_or(0, |i| i.stream_sequence)
}
