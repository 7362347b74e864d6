use mediasift_core::{ErrorInfo, ErrorKind, FileStatus, Flag, MediaKind};

/// One analyzer's output for one content hash.
#[derive(Debug, Clone, PartialEq)]
pub struct AnalysisRow {
    pub analyzer: String,
    pub version: String,
    pub output: serde_json::Value,
}

/// The outcome for one path, as written by the pipeline.
#[derive(Debug, Clone, PartialEq)]
pub struct FileRow {
    pub path: String,
    pub content_hash: Option<String>,
    pub size_bytes: u64,
    pub kind: MediaKind,
    pub format: Option<String>,
    pub status: FileStatus,
    pub error: Option<ErrorInfo>,
    pub flags: Vec<Flag>,
    pub pipeline_signature: String,
}

/// What the store already knows about some content (from any path).
#[derive(Debug, Clone, PartialEq)]
pub struct KnownContent {
    pub kind: MediaKind,
    pub format: Option<String>,
    pub status: FileStatus,
    pub error: Option<ErrorInfo>,
    pub flags: Vec<Flag>,
}

/// What was recorded for a path, to decide whether a re-run can skip it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileState {
    pub content_hash: Option<String>,
    pub pipeline_signature: String,
    pub kind: MediaKind,
    /// Why the file failed, when it did.
    pub error_kind: Option<ErrorKind>,
}
