//! The content hash: BLAKE3 over the file's bytes, the dedup and cache key of every result.

use std::fs::File;
use std::path::Path;

use mediasift_core::{ErrorKind, MediaError};

/// Hex BLAKE3 of a file and its size, read in a streaming way (no whole-file buffer).
pub fn hash_file(path: &Path, max_bytes: u64) -> Result<(String, u64), MediaError> {
    let io = |e: std::io::Error| MediaError::new(path, ErrorKind::Io, format!("cannot read: {e}"));
    let file = File::open(path).map_err(io)?;
    let size = file.metadata().map_err(io)?.len();
    if size > max_bytes {
        return Err(MediaError::new(
            path,
            ErrorKind::TooLarge,
            format!("file too large: {size} bytes exceeds max_file_bytes {max_bytes}"),
        ));
    }
    let mut hasher = blake3::Hasher::new();
    hasher.update_reader(file).map_err(io)?;
    Ok((hasher.finalize().to_hex().to_string(), size))
}
