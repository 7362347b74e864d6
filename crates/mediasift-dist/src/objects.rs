//! Object storage: where inputs are read from (local roots, S3 buckets) and where embeddings and
//! thumbnails are written (a local directory or `s3://bucket/prefix`), all through object_store.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures::StreamExt;
use futures::stream::BoxStream;
use mediasift_core::{DistributedConfig, ErrorKind};
use object_store::aws::AmazonS3Builder;
use object_store::local::LocalFileSystem;
use object_store::path::Path as ObjectPath;
use object_store::prefix::PrefixStore;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use tokio::io::AsyncWriteExt;

use crate::DistError;
use crate::source::Source;

/// One input found by a listing.
#[derive(Debug, Clone)]
pub struct Listed {
    pub source: Source,
    pub size: u64,
    /// Changes when the content may have changed: the ETag, else size + modification time.
    pub version: String,
}

/// An input made available as a local file for the decoders.
#[derive(Debug)]
pub struct LocalInput {
    pub path: PathBuf,
    pub size: u64,
    /// BLAKE3 of the content, computed while reading.
    pub hash: String,
    /// Keeps a downloaded copy alive until the analysis is done.
    _temp: Option<tempfile::TempPath>,
}

#[derive(Debug)]
pub struct Objects {
    cfg: DistributedConfig,
    out: Arc<dyn ObjectStore>,
    buckets: Mutex<HashMap<String, Arc<dyn ObjectStore>>>,
}

impl Objects {
    pub fn new(cfg: &DistributedConfig) -> Result<Objects, DistError> {
        let objects = Objects {
            cfg: cfg.clone(),
            out: Arc::new(LocalFileSystem::new()),
            buckets: Mutex::new(HashMap::new()),
        };
        let out: Arc<dyn ObjectStore> = match Source::parse(&cfg.object_store) {
            Ok(Source::S3 { bucket, key }) if key.is_empty() => objects.bucket(&bucket)?,
            Ok(Source::S3 { bucket, key }) => Arc::new(PrefixStore::new(
                objects.bucket(&bucket)?,
                key.trim_end_matches('/'),
            )),
            _ => {
                let dir = PathBuf::from(&cfg.object_store);
                std::fs::create_dir_all(&dir)?;
                Arc::new(LocalFileSystem::new_with_prefix(&dir)?)
            }
        };
        Ok(Objects { out, ..objects })
    }

    fn bucket(&self, name: &str) -> Result<Arc<dyn ObjectStore>, DistError> {
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(b) = buckets.get(name) {
            return Ok(b.clone());
        }
        let mut builder = AmazonS3Builder::from_env()
            .with_bucket_name(name)
            .with_region(&self.cfg.s3_region)
            .with_allow_http(self.cfg.s3_allow_http)
            .with_skip_signature(self.cfg.s3_skip_signature);
        if !self.cfg.s3_endpoint.is_empty() {
            // S3-compatible servers are addressed path-style.
            builder = builder
                .with_endpoint(&self.cfg.s3_endpoint)
                .with_virtual_hosted_style_request(false);
        }
        let store: Arc<dyn ObjectStore> = Arc::new(builder.build()?);
        buckets.insert(name.to_string(), store.clone());
        Ok(store)
    }

    /// Writes an output object (embedding, thumbnail, fused vector).
    pub async fn put(&self, key: &str, bytes: Vec<u8>) -> Result<(), DistError> {
        self.out
            .put(&ObjectPath::from(key), PutPayload::from(bytes))
            .await?;
        Ok(())
    }

    pub async fn get(&self, key: &str) -> Result<Bytes, DistError> {
        Ok(self.out.get(&ObjectPath::from(key)).await?.bytes().await?)
    }

    /// Output keys under `prefix` (tests and `status`).
    pub async fn list_out(&self, prefix: &str) -> Result<Vec<String>, DistError> {
        let mut keys = Vec::new();
        let mut s = self.out.list(Some(&ObjectPath::from(prefix)));
        while let Some(meta) = s.next().await {
            keys.push(meta?.location.to_string());
        }
        Ok(keys)
    }

    /// The first `n` bytes of an input (to sniff its kind).
    pub async fn head_bytes(&self, source: &Source, n: u64) -> Result<Vec<u8>, DistError> {
        match source {
            Source::Local(p) => {
                let path = p.clone();
                let read = tokio::task::spawn_blocking(move || {
                    use std::io::Read;
                    let mut buf = Vec::new();
                    std::fs::File::open(&path)?
                        .take(n)
                        .read_to_end(&mut buf)
                        .map(|_| buf)
                })
                .await
                .map_err(|e| DistError::Io(std::io::Error::other(e)))?;
                read.map_err(|e| media_io(source, e))
            }
            Source::S3 { bucket, key } => {
                let store = self.bucket(bucket)?;
                let path = ObjectPath::from(key.as_str());
                let size = store.head(&path).await.map_err(|e| s3_err(source, e))?.size;
                if size == 0 {
                    return Ok(Vec::new());
                }
                Ok(store
                    .get_range(&path, 0..n.min(size))
                    .await
                    .map_err(|e| s3_err(source, e))?
                    .to_vec())
            }
        }
    }

    /// The input as a local file, hashed on the way: a local path is used where it is, an S3
    /// object is streamed to a temporary file (refused past `max_bytes`).
    pub async fn localize(&self, source: &Source, max_bytes: u64) -> Result<LocalInput, DistError> {
        match source {
            Source::Local(p) => {
                let path = p.clone();
                let hashed = tokio::task::spawn_blocking(move || {
                    mediasift_pipeline::hash_file(&path, max_bytes)
                })
                .await
                .map_err(|e| DistError::Io(std::io::Error::other(e)))?;
                let (hash, size) = hashed.map_err(|e| DistError::Media {
                    uri: source.uri(),
                    kind: e.kind,
                    message: e.message,
                })?;
                Ok(LocalInput {
                    path: p.clone(),
                    size,
                    hash,
                    _temp: None,
                })
            }
            Source::S3 { bucket, key } => {
                let store = self.bucket(bucket)?;
                let got = store
                    .get(&ObjectPath::from(key.as_str()))
                    .await
                    .map_err(|e| s3_err(source, e))?;
                let size = got.meta.size;
                if size > max_bytes {
                    return Err(DistError::Media {
                        uri: source.uri(),
                        kind: ErrorKind::TooLarge,
                        message: format!(
                            "file too large: {size} bytes exceeds max_file_bytes {max_bytes}"
                        ),
                    });
                }
                let temp = tempfile::NamedTempFile::new()?.into_temp_path();
                let mut file = tokio::fs::File::create(&temp).await?;
                let mut hasher = blake3::Hasher::new();
                let mut stream = got.into_stream();
                while let Some(chunk) = stream.next().await {
                    let chunk = chunk?;
                    hasher.update(&chunk);
                    file.write_all(&chunk).await?;
                }
                file.flush().await?;
                Ok(LocalInput {
                    path: temp.to_path_buf(),
                    size,
                    hash: hasher.finalize().to_hex().to_string(),
                    _temp: Some(temp),
                })
            }
        }
    }

    /// Streams the inputs under a local directory or an S3 prefix, without holding the listing.
    pub fn list(
        &self,
        root: &Source,
    ) -> Result<BoxStream<'static, Result<Listed, DistError>>, DistError> {
        match root {
            Source::S3 { bucket, key } => {
                let store = self.bucket(bucket)?;
                let bucket = bucket.clone();
                let prefix = (!key.is_empty()).then(|| ObjectPath::from(key.as_str()));
                Ok(store
                    .list(prefix.as_ref())
                    // "Folder" marker objects are not inputs.
                    .filter(|meta| {
                        futures::future::ready(
                            meta.as_ref()
                                .map_or(true, |m| !m.location.as_ref().ends_with('/')),
                        )
                    })
                    .map(move |meta| {
                        let meta = meta?;
                        Ok(Listed {
                            source: Source::S3 {
                                bucket: bucket.clone(),
                                key: meta.location.to_string(),
                            },
                            size: meta.size,
                            version: meta.e_tag.clone().unwrap_or_else(|| {
                                format!("{}@{}", meta.size, meta.last_modified.timestamp_millis())
                            }),
                        })
                    })
                    .boxed())
            }
            Source::Local(dir) => {
                let (tx, rx) = tokio::sync::mpsc::channel::<Result<Listed, DistError>>(1024);
                let dir = dir.clone();
                tokio::task::spawn_blocking(move || {
                    mediasift_pipeline::walk(
                        std::slice::from_ref(&dir),
                        &mediasift_pipeline::WalkOptions::default(),
                        |path| {
                            let listed = std::fs::metadata(&path)
                                .map(|m| {
                                    let mtime = m
                                        .modified()
                                        .ok()
                                        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                                        .map_or(0, |d| d.as_nanos());
                                    Listed {
                                        source: Source::Local(path.clone()),
                                        size: m.len(),
                                        version: format!("{}@{mtime}", m.len()),
                                    }
                                })
                                .map_err(DistError::Io);
                            tx.blocking_send(listed).is_ok()
                        },
                    );
                });
                Ok(tokio_stream(rx))
            }
        }
    }
}

fn tokio_stream<T: Send + 'static>(
    mut rx: tokio::sync::mpsc::Receiver<T>,
) -> BoxStream<'static, T> {
    futures::stream::poll_fn(move |cx| rx.poll_recv(cx)).boxed()
}

fn media_io(source: &Source, e: std::io::Error) -> DistError {
    DistError::Media {
        uri: source.uri(),
        kind: ErrorKind::Io,
        message: format!("cannot read: {e}"),
    }
}

/// A missing object is a permanent error of that job; anything else is worth a retry.
fn s3_err(source: &Source, e: object_store::Error) -> DistError {
    match e {
        object_store::Error::NotFound { .. } => DistError::Media {
            uri: source.uri(),
            kind: ErrorKind::NotMedia,
            message: "object does not exist".into(),
        },
        e => DistError::ObjectStore(e),
    }
}
