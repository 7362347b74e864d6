use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Why a file could not be analyzed. The kind carries the retry meaning: everything about the
/// file's content is permanent (retrying gives the same answer), I/O and timeouts may be transient.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// Zero-byte file.
    Empty,
    /// The content is something other than media (HTML, an executable, an archive, binary junk).
    NotMedia,
    /// Recognised media, but a format or codec we cannot decode.
    Unsupported,
    /// The data is damaged so that nothing usable could be decoded.
    Corrupt,
    /// The data ends early and nothing usable could be decoded from what is present.
    Truncated,
    /// A configured limit (bytes, pixels, duration) is exceeded; checked before allocating.
    TooLarge,
    /// Decoding did not finish within the per-file decode timeout.
    Timeout,
    /// The file could not be read (permissions, vanished, I/O error).
    Io,
    /// A required external tool (ffmpeg) is not installed.
    MissingTool,
}

impl ErrorKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::Empty => "empty",
            ErrorKind::NotMedia => "not_media",
            ErrorKind::Unsupported => "unsupported",
            ErrorKind::Corrupt => "corrupt",
            ErrorKind::Truncated => "truncated",
            ErrorKind::TooLarge => "too_large",
            ErrorKind::Timeout => "timeout",
            ErrorKind::Io => "io",
            ErrorKind::MissingTool => "missing_tool",
        }
    }

    /// Permanent errors go straight to the dead-letter path; the others are worth a retry.
    pub fn is_permanent(self) -> bool {
        !matches!(
            self,
            ErrorKind::Io | ErrorKind::Timeout | ErrorKind::MissingTool
        )
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A failure to take in one file: which file, what kind of failure, and a reason a user
/// understands (`truncated JPEG: unexpected end of data at byte 5123`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}: {message}", path.display())]
pub struct MediaError {
    pub path: PathBuf,
    pub kind: ErrorKind,
    pub message: String,
}

impl MediaError {
    pub fn new(path: impl AsRef<Path>, kind: ErrorKind, message: impl Into<String>) -> Self {
        MediaError {
            path: path.as_ref().to_path_buf(),
            kind,
            message: message.into(),
        }
    }

    pub fn is_permanent(&self) -> bool {
        self.kind.is_permanent()
    }
}
