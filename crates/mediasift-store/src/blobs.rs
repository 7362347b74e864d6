use std::path::Path;
use std::sync::Arc;

use object_store::local::LocalFileSystem;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};

use crate::StoreError;

/// Blob storage (thumbnails, embeddings) behind object_store: a local directory here, S3 in the
/// distributed mode.
#[derive(Debug, Clone)]
pub struct BlobStore {
    inner: Arc<dyn ObjectStore>,
}

impl BlobStore {
    /// A store rooted at a local directory, created if missing.
    pub fn local(root: &Path) -> Result<BlobStore, StoreError> {
        std::fs::create_dir_all(root).map_err(|source| StoreError::DataDir {
            path: root.to_path_buf(),
            source,
        })?;
        let fs = LocalFileSystem::new_with_prefix(root)?;
        Ok(BlobStore {
            inner: Arc::new(fs),
        })
    }

    /// Writes (or overwrites) one blob.
    pub async fn put(&self, key: &str, bytes: Vec<u8>) -> Result<(), StoreError> {
        self.inner
            .put(&ObjectPath::from(key), PutPayload::from(bytes))
            .await?;
        Ok(())
    }
}
