use mediasift_core::ErrorKind;

/// Errors of the distributed mode. [`DistError::is_transient`] decides between a retry with
/// backoff and the dead-letter stream.
#[derive(Debug, thiserror::Error)]
pub enum DistError {
    #[error("bad source {0}: {1}")]
    BadSource(String, &'static str),
    #[error("{uri}: outside the allowed roots ({roots})")]
    NotAllowed { uri: String, roots: String },
    #[error("{uri}: {kind}: {message}")]
    Media {
        uri: String,
        kind: ErrorKind,
        message: String,
    },
    #[error("postgres: {0}")]
    Postgres(#[from] sqlx::Error),
    #[error("postgres migrations: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("object store: {0}")]
    ObjectStore(#[from] object_store::Error),
    #[error("nats: {0}")]
    Nats(String),
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("bad message: {0}")]
    BadMessage(String),
    #[error("configuration: {0}")]
    Config(String),
    /// A failure shared by a batch of messages (its database read), retried for each.
    #[error("{0}")]
    Retry(String),
}

impl DistError {
    pub fn nats(e: impl std::fmt::Display) -> DistError {
        DistError::Nats(e.to_string())
    }

    /// Worth retrying: the servers may come back; the input will not change.
    pub fn is_transient(&self) -> bool {
        match self {
            DistError::Postgres(_)
            | DistError::ObjectStore(_)
            | DistError::Nats(_)
            | DistError::Io(_)
            | DistError::Retry(_) => true,
            DistError::Media { kind, .. } => !kind.is_permanent(),
            _ => false,
        }
    }

    /// The short, bounded name used in metrics and the job row.
    pub fn kind(&self) -> &'static str {
        match self {
            DistError::BadSource(..) => "bad_source",
            DistError::NotAllowed { .. } => "not_allowed",
            DistError::Media { kind, .. } => kind.as_str(),
            DistError::Postgres(_) | DistError::Migrate(_) => "postgres",
            DistError::ObjectStore(_) => "object_store",
            DistError::Nats(_) => "nats",
            DistError::Io(_) => "io",
            DistError::BadMessage(_) => "bad_message",
            DistError::Config(_) => "config",
            DistError::Retry(_) => "retry",
        }
    }
}
