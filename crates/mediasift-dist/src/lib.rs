//! The distributed mode of mediasift: a NATS JetStream dispatcher feeding vision, audio and
//! text workers, results in Postgres (+ pgvector), embeddings in S3 or a local directory, and a
//! fusion worker that joins each job's modality results into one moderated, searchable record.
//! The analysis itself is [`mediasift_pipeline::Stage`], the same code `mediasift analyze` runs.
//!
//! Flow: `enqueue` → `<prefix>.jobs` → dispatcher → `<prefix>.tasks.{vision,audio,text}` →
//! workers (rows + blobs) → `<prefix>.results.*` → fusion → `records`. Anything that will not
//! be retried lands in `<prefix>.dlq.*` with its reason.

mod bus;
mod coalesce;
mod context;
pub mod dispatcher;
pub mod dlq;
pub mod enqueue;
mod error;
pub mod fusion;
mod messages;
mod metrics;
mod objects;
mod pg;
pub mod policy;
mod service;
mod settle;
mod source;
pub mod status;
pub mod worker;

pub use bus::{Bus, StreamKind};
pub use context::Ctx;
pub use error::DistError;
pub use messages::{DeadLetter, DerivedText, JobMsg, ResultMsg, TaskMsg};
pub use metrics::DistMetrics;
pub use objects::Objects;
pub use pg::{MIGRATOR, Pg};
pub use service::{Shutdown, serve_http};
pub use source::{Allowlist, Source};
pub use worker::Modality;
