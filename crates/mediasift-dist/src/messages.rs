//! Message bodies on the subjects (JSON). Every message carries the job id; `Nats-Msg-Id`
//! headers make publishing idempotent within the stream's duplicate window.

use serde::{Deserialize, Serialize};

/// `<prefix>.jobs`: one input to analyze.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobMsg {
    pub job_id: String,
    pub batch_id: String,
    pub uri: String,
}

/// `<prefix>.tasks.<modality>`: work for one modality worker.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskMsg {
    pub job_id: String,
    pub uri: String,
    /// `vision`, `audio`, `text`, or `text:transcript` / `text:ocr` for derived text.
    pub modality: String,
    /// Text produced by another worker (transcript, OCR), with the content hash it belongs to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub derived: Option<DerivedText>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DerivedText {
    pub content_hash: String,
    pub source: String,
    pub text: String,
}

/// `<prefix>.results.<modality>`: a worker finished (or gave up on) its part of a job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResultMsg {
    pub job_id: String,
    pub modality: String,
    pub ok: bool,
}

/// `<prefix>.dlq.<stage>`: a job or task that will not be retried, with why.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeadLetter {
    pub job_id: String,
    pub uri: String,
    /// `dispatcher`, `vision`, `audio`, `text`.
    pub stage: String,
    pub error_kind: String,
    pub reason: String,
    pub deliveries: i64,
    /// The subject and body of the message that failed, for `mediasift dlq retry`.
    pub subject: String,
    pub payload: serde_json::Value,
}
