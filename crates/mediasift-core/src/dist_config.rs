//! Settings of the distributed mode (NATS, Postgres, object storage), the moderation policy and
//! the fused record. Part of [`crate::RawConfig`]; the embedded run ignores the first section.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DistributedConfig {
    /// NATS server(s), comma-separated. JetStream must be enabled.
    pub nats_url: String,
    /// Subject and stream prefix: `<prefix>.jobs`, `<prefix>.tasks.vision`, … (lets several
    /// deployments or test runs share one NATS).
    pub prefix: String,
    /// Postgres with the pgvector extension.
    pub postgres_url: String,
    /// Run the Postgres migrations when a command starts (`mediasift migrate` does it by hand).
    pub migrate_on_start: bool,
    /// Embeddings and thumbnails: a local directory or `s3://bucket/prefix`.
    pub object_store: String,
    /// S3 endpoint for S3-compatible servers (empty = AWS). Credentials come from the usual
    /// `AWS_*` environment variables.
    pub s3_endpoint: String,
    pub s3_region: String,
    /// Allow plain-HTTP endpoints (a server on loopback).
    pub s3_allow_http: bool,
    /// Send unsigned requests (a server without credentials).
    pub s3_skip_signature: bool,
    /// Where jobs may read inputs: local directories and `s3://bucket/prefix` roots. A job
    /// outside all of them is rejected.
    pub allowed_roots: Vec<String>,
    /// A task not acknowledged (nor marked in progress) within this long is redelivered.
    pub ack_wait_secs: u64,
    /// Deliveries before a task goes to the dead-letter stream.
    pub max_deliver: i64,
    /// Delays before the 2nd, 3rd, … delivery of a task after a transient error (seconds).
    pub backoff_secs: Vec<u64>,
    /// Tasks a worker processes at once (0 = 1 per CPU core).
    pub concurrency: usize,
    /// A job whose modality results are still missing this long after dispatch gets a
    /// partial record (seconds).
    pub fusion_timeout_secs: u64,
    /// `/metrics` and `/healthz` of long-running commands (empty = not served).
    pub metrics_addr: String,
}

impl Default for DistributedConfig {
    fn default() -> Self {
        DistributedConfig {
            nats_url: "nats://127.0.0.1:4222".into(),
            prefix: "mediasift".into(),
            postgres_url: "postgres://postgres@127.0.0.1:5432/mediasift".into(),
            migrate_on_start: true,
            object_store: "./mediasift-objects".into(),
            s3_endpoint: String::new(),
            s3_region: "us-east-1".into(),
            s3_allow_http: false,
            s3_skip_signature: false,
            allowed_roots: Vec::new(),
            ack_wait_secs: 60,
            max_deliver: 5,
            backoff_secs: vec![2, 10, 60],
            concurrency: 0,
            fusion_timeout_secs: 3600,
            metrics_addr: "127.0.0.1:9464".into(),
        }
    }
}

/// How a fused record's moderation decision is made.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ModerationConfig {
    /// An NSFW score (image, or the highest video frame) at or above this → `review`…
    pub nsfw_review: f64,
    /// …at or above this → `block`.
    pub nsfw_block: f64,
    /// Words or phrases that block an item when found in its transcript, OCR or text
    /// (case-insensitive, whole words).
    pub blocked_terms: Vec<String>,
    /// Zero-shot (CLIP) or ImageNet labels that send an item to review when among its labels.
    pub review_labels: Vec<String>,
    /// An item whose analysis failed for some modality is sent to review rather than allowed.
    pub review_partial: bool,
}

impl Default for ModerationConfig {
    fn default() -> Self {
        ModerationConfig {
            nsfw_review: 0.5,
            nsfw_block: 0.85,
            blocked_terms: Vec::new(),
            review_labels: Vec::new(),
            review_partial: true,
        }
    }
}

/// Weights of the fused embedding: each present embedding is L2-normalised, scaled by its
/// weight, concatenated, and the result normalised again.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FusionConfig {
    pub image_weight: f64,
    pub text_weight: f64,
    pub clip_weight: f64,
}

impl Default for FusionConfig {
    fn default() -> Self {
        FusionConfig {
            image_weight: 1.0,
            text_weight: 1.0,
            clip_weight: 1.0,
        }
    }
}

/// CLIP: which model, and the labels of zero-shot classification.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClipConfig {
    /// A model id (`models_dir/<id>` or `models.paths`): any Hugging Face CLIP checkpoint
    /// folder (config.json, model.safetensors, tokenizer.json).
    pub model: String,
    /// Zero-shot labels; each image gets a probability per label.
    pub labels: Vec<String>,
    /// The text each label is embedded as; `{}` is the label.
    pub prompt: String,
}

impl Default for ClipConfig {
    fn default() -> Self {
        ClipConfig {
            model: "clip-vit-base-patch32".into(),
            labels: [
                "person",
                "animal",
                "food",
                "vehicle",
                "building",
                "landscape",
                "document",
                "screenshot",
                "weapon",
                "nudity",
                "violence",
                "drugs",
            ]
            .iter()
            .map(|s| s.to_string())
            .collect(),
            prompt: "a photo of {}".into(),
        }
    }
}
