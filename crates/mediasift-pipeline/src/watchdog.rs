//! Runs blocking decoder work on its own thread with a deadline. A decoder that loops forever
//! cannot be stopped from outside in safe Rust, so on timeout the thread is abandoned (it dies
//! with the process) and the file fails with `timeout`; a panicking decoder becomes a `corrupt`
//! error instead of taking the worker down.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;
use std::time::Duration;

use mediasift_core::{ErrorKind, MediaError};
use tokio::sync::oneshot;

use crate::metrics::Metrics;

/// Runs `work` on a dedicated thread, waiting at most `timeout` for it.
pub async fn run_guarded<T: Send + 'static>(
    path: &Path,
    timeout: Duration,
    metrics: &Metrics,
    work: impl FnOnce() -> Result<T, MediaError> + Send + 'static,
) -> Result<T, MediaError> {
    let (tx, rx) = oneshot::channel();
    let spawned = std::thread::Builder::new()
        .name("mediasift-decode".into())
        .spawn(move || {
            let result = catch_unwind(AssertUnwindSafe(work));
            let _ = tx.send(result);
        });
    if let Err(e) = spawned {
        return Err(MediaError::new(
            path,
            ErrorKind::Io,
            format!("cannot start decoder thread: {e}"),
        ));
    }
    match tokio::time::timeout(timeout, rx).await {
        Ok(Ok(Ok(result))) => result,
        Ok(Ok(Err(panic))) => {
            let msg = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into());
            metrics.decoder_panics.inc();
            Err(MediaError::new(
                path,
                ErrorKind::Corrupt,
                format!("decoder crashed on this file: {msg}"),
            ))
        }
        Ok(Err(_)) => Err(MediaError::new(
            path,
            ErrorKind::Corrupt,
            "decoder thread ended without a result",
        )),
        Err(_) => {
            metrics.abandoned_decoders.inc();
            tracing::warn!(path = %path.display(), timeout_secs = timeout.as_secs_f64(), "Decoder exceeded its timeout; abandoning it");
            Err(MediaError::new(
                path,
                ErrorKind::Timeout,
                format!(
                    "decoding did not finish within {:.0} s (decode_timeout_secs)",
                    timeout.as_secs_f64()
                ),
            ))
        }
    }
}
