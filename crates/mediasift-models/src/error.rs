use std::path::PathBuf;

/// A model could not be found, fetched, loaded or run.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error(
        "model {id} is not installed (looked in: {looked}); run `mediasift models fetch`, set \
         models.paths.\"{id}\" in the config, or allow downloads with models.allow_download = true"
    )]
    NotInstalled { id: String, looked: String },
    #[error("model {id}: file {} has sha256 {actual}, expected {expected}", path.display())]
    Checksum {
        id: String,
        path: PathBuf,
        actual: String,
        expected: String,
    },
    #[error("model {id}: fetching failed: {reason}")]
    Fetch { id: String, reason: String },
    #[error("model {id}: loading failed: {reason}")]
    Load { id: String, reason: String },
    #[error("model {id}: inference failed: {reason}")]
    Inference { id: String, reason: String },
    #[error("{tool} is not installed; it is needed for {what} ({hint})")]
    MissingTool {
        tool: String,
        what: String,
        hint: String,
    },
    #[error("device {0} is not available: {1}")]
    Device(String, String),
    #[error("I/O error on {}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

impl ModelError {
    pub(crate) fn load(id: &str, reason: impl std::fmt::Display) -> ModelError {
        ModelError::Load {
            id: id.to_string(),
            reason: reason.to_string(),
        }
    }
    pub(crate) fn inference(id: &str, reason: impl std::fmt::Display) -> ModelError {
        ModelError::Inference {
            id: id.to_string(),
            reason: reason.to_string(),
        }
    }
}
