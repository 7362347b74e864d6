//! Storage for mediasift. The embedded mode keeps records in SQLite (through sqlx, migrations in
//! `migrations/sqlite/`) and blobs (thumbnails, later embeddings) in a local object_store
//! directory; the distributed mode will use Postgres and S3 behind the same object_store API.
//!
//! ```no_run
//! # async fn demo() -> Result<(), mediasift_store::StoreError> {
//! let store = mediasift_store::SqliteStore::open("./mediasift-data".as_ref()).await?;
//! for failure in store.failures().await? {
//!     if let Some(error) = &failure.error {
//!         println!("{}: {}", failure.path, error.message);
//!     }
//! }
//! # Ok(()) }
//! ```

mod blobs;
mod error;
pub mod npy;
mod rows;
mod sqlite;

pub use blobs::BlobStore;
pub use error::StoreError;
pub use rows::{AnalysisRow, FileRow, FileState, KnownContent};
pub use sqlite::{DB_FILE, SqliteStore};
