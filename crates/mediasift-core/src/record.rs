use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::{ErrorKind, MediaKind};

/// Outcome of analyzing one file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FileStatus {
    Ok,
    Failed,
}

impl FileStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            FileStatus::Ok => "ok",
            FileStatus::Failed => "failed",
        }
    }
}

/// Something noteworthy about a file that did not stop its analysis.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Flag {
    /// The file's extension names another format than its content (a PNG named `.jpg`).
    ExtensionMismatch,
    /// The data ends early; what was present was analyzed.
    Truncated,
}

/// `{"kind": ..., "message": ...}` of a failed file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorInfo {
    pub kind: ErrorKind,
    pub message: String,
}

/// One line of `mediasift export --format jsonl`: everything known about one file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExportRecord {
    pub path: String,
    /// BLAKE3 of the file's bytes (hex); absent only when the file could not be read.
    pub content_hash: Option<String>,
    pub kind: MediaKind,
    /// Detected container/format (`jpeg`, `wav`, `mp4`), absent when nothing was recognised.
    pub format: Option<String>,
    pub size_bytes: u64,
    pub status: FileStatus,
    pub error: Option<ErrorInfo>,
    pub flags: Vec<Flag>,
    /// Analyzer name → its output.
    pub analyses: BTreeMap<String, serde_json::Value>,
    pub analyzed_at: String,
}
