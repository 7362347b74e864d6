//! Cross-file batching for model inference. Decode threads submit their inputs (for example the
//! text windows of one document) and block for the outputs; one inference thread per model
//! gathers submissions until `max_batch` inputs or `max_wait` has passed, runs one forward pass,
//! and hands each submission its slice of the results. The model thus sees full batches from
//! many files, and never more than one pass at a time competes for the cores.

use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, sync_channel};
use std::time::{Duration, Instant};

use mediasift_models::ModelError;

type Reply<O> = SyncSender<Result<Vec<O>, String>>;

/// A handle to submit inputs to one model's inference thread.
#[derive(Debug)]
pub struct Batcher<I, O> {
    tx: SyncSender<(Vec<I>, Reply<O>)>,
    name: &'static str,
}

impl<I, O> Clone for Batcher<I, O> {
    fn clone(&self) -> Self {
        Batcher {
            tx: self.tx.clone(),
            name: self.name,
        }
    }
}

impl<I: Send + 'static, O: Send + 'static> Batcher<I, O> {
    /// Starts the inference thread. `forward` maps a batch of inputs to one output per input.
    pub fn spawn(
        name: &'static str,
        max_batch: usize,
        max_wait: Duration,
        mut forward: impl FnMut(&[I]) -> Result<Vec<O>, ModelError> + Send + 'static,
    ) -> Batcher<I, O> {
        let (tx, rx) = sync_channel::<(Vec<I>, Reply<O>)>(256);
        let spawned = std::thread::Builder::new()
            .name(format!("mediasift-{name}"))
            .spawn(move || {
                while let Some(batch) = gather(&rx, max_batch, max_wait) {
                    run_batch(name, batch, max_batch, &mut forward);
                }
            });
        if let Err(e) = spawned {
            tracing::error!(model = name, error = %e, "Cannot start the inference thread");
        }
        Batcher { tx, name }
    }

    /// Submits inputs and waits for their outputs, in order.
    pub fn run(&self, inputs: Vec<I>) -> Result<Vec<O>, String> {
        if inputs.is_empty() {
            return Ok(Vec::new());
        }
        let (reply, rx) = sync_channel(1);
        self.tx
            .send((inputs, reply))
            .map_err(|_| format!("{} inference thread has stopped", self.name))?;
        rx.recv()
            .map_err(|_| format!("{} inference thread has stopped", self.name))?
    }
}

/// Waits for a first submission, then collects more until the batch is full or `max_wait` ends.
fn gather<I, O>(
    rx: &Receiver<(Vec<I>, Reply<O>)>,
    max_batch: usize,
    max_wait: Duration,
) -> Option<Vec<(Vec<I>, Reply<O>)>> {
    let first = rx.recv().ok()?;
    let mut size = first.0.len();
    let mut batch = vec![first];
    let deadline = Instant::now() + max_wait;
    while size < max_batch {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(sub) => {
                size += sub.0.len();
                batch.push(sub);
            }
            Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => break,
        }
    }
    Some(batch)
}

fn run_batch<I, O>(
    name: &str,
    batch: Vec<(Vec<I>, Reply<O>)>,
    max_batch: usize,
    forward: &mut impl FnMut(&[I]) -> Result<Vec<O>, ModelError>,
) {
    let mut inputs = Vec::new();
    let mut replies = Vec::with_capacity(batch.len());
    for (items, reply) in batch {
        replies.push((items.len(), reply));
        inputs.extend(items);
    }
    let mut outputs = Vec::with_capacity(inputs.len());
    let mut failure = None;
    let metrics = crate::metrics::inference();
    for chunk in inputs.chunks(max_batch.max(1)) {
        let started = Instant::now();
        let result = forward(chunk);
        metrics
            .seconds
            .with_label_values(&[name])
            .observe(started.elapsed().as_secs_f64());
        metrics
            .batch_size
            .with_label_values(&[name])
            .observe(chunk.len() as f64);
        match result {
            Ok(out) if out.len() == chunk.len() => outputs.extend(out),
            Ok(out) => {
                failure = Some(format!(
                    "model returned {} outputs for {} inputs",
                    out.len(),
                    chunk.len()
                ))
            }
            Err(e) => failure = Some(e.to_string()),
        }
        if failure.is_some() {
            break;
        }
    }
    let mut outputs = outputs.into_iter();
    for (n, reply) in replies {
        let result = match &failure {
            Some(e) => Err(e.clone()),
            None => Ok(outputs.by_ref().take(n).collect()),
        };
        let _ = reply.send(result);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn submissions_from_many_threads_share_batches_and_get_their_own_results() {
        let sizes = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let seen = sizes.clone();
        let batcher = Batcher::spawn(
            "double",
            8,
            Duration::from_millis(50),
            move |xs: &[u32]| {
                seen.lock().unwrap().push(xs.len());
                Ok(xs.iter().map(|x| x * 2).collect())
            },
        );
        let handles: Vec<_> = (0..4u32)
            .map(|t| {
                let b = batcher.clone();
                std::thread::spawn(move || b.run(vec![t * 10, t * 10 + 1, t * 10 + 2]).unwrap())
            })
            .collect();
        for (t, h) in handles.into_iter().enumerate() {
            let t = t as u32;
            assert_eq!(h.join().unwrap(), vec![t * 20, t * 20 + 2, t * 20 + 4]);
        }
        let sizes = sizes.lock().unwrap();
        assert!(sizes.iter().all(|&s| s <= 8), "{sizes:?}");
        assert!(
            sizes.iter().any(|&s| s > 3),
            "inputs of several files were batched: {sizes:?}"
        );
    }
}
