//! Many concurrent tasks, one database round trip: requests queue on a channel, and one task
//! takes everything queued (up to a limit) into a single call whose results go back to each
//! caller. No timer: requests that arrive while a call is in flight form the next batch, so an
//! idle system pays no latency and a busy one pays one round trip per batch.

use std::future::Future;

use tokio::sync::{mpsc, oneshot};

use crate::DistError;

type Reply<R> = oneshot::Sender<Result<R, String>>;

#[derive(Debug)]
pub struct Coalescer<Q, R> {
    tx: mpsc::Sender<(Q, Reply<R>)>,
}

impl<Q, R> Clone for Coalescer<Q, R> {
    fn clone(&self) -> Self {
        Coalescer {
            tx: self.tx.clone(),
        }
    }
}

impl<Q: Send + 'static, R: Send + 'static> Coalescer<Q, R> {
    /// Starts the batching task. `call` answers a batch of requests with one result each, in
    /// order; its error goes to every request of the batch.
    pub fn spawn<F, Fut>(max: usize, call: F) -> Coalescer<Q, R>
    where
        F: Fn(Vec<Q>) -> Fut + Send + 'static,
        Fut: Future<Output = Result<Vec<R>, String>> + Send,
    {
        let (tx, mut rx) = mpsc::channel::<(Q, Reply<R>)>(max * 4);
        tokio::spawn(async move {
            while let Some(first) = rx.recv().await {
                let mut batch = vec![first];
                while batch.len() < max {
                    match rx.try_recv() {
                        Ok(next) => batch.push(next),
                        Err(_) => break,
                    }
                }
                let (requests, replies): (Vec<Q>, Vec<Reply<R>>) = batch.into_iter().unzip();
                let n = requests.len();
                match call(requests).await {
                    Ok(results) if results.len() == n => {
                        for (reply, r) in replies.into_iter().zip(results) {
                            let _ = reply.send(Ok(r));
                        }
                    }
                    Ok(results) => {
                        let e = format!("{} results for {n} requests", results.len());
                        for reply in replies {
                            let _ = reply.send(Err(e.clone()));
                        }
                    }
                    Err(e) => {
                        for reply in replies {
                            let _ = reply.send(Err(e.clone()));
                        }
                    }
                }
            }
        });
        Coalescer { tx }
    }

    /// Queues one request and waits for its result. Errors are transient (retried).
    pub async fn call(&self, request: Q) -> Result<R, DistError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send((request, reply))
            .await
            .map_err(|_| DistError::Retry("database batcher stopped".into()))?;
        rx.await
            .map_err(|_| DistError::Retry("database batcher stopped".into()))?
            .map_err(DistError::Retry)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn concurrent_calls_share_batches_and_get_their_own_answers() {
        let sizes = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let seen = sizes.clone();
        let c = Coalescer::spawn(8, move |xs: Vec<u32>| {
            seen.lock().unwrap().push(xs.len());
            async move {
                tokio::time::sleep(std::time::Duration::from_millis(5)).await;
                Ok(xs.iter().map(|x| x * 2).collect())
            }
        });
        let calls: Vec<_> = (0..40u32)
            .map(|i| {
                let c = c.clone();
                tokio::spawn(async move { (i, c.call(i).await.unwrap()) })
            })
            .collect();
        for call in calls {
            let (i, r) = call.await.unwrap();
            assert_eq!(r, i * 2);
        }
        let sizes = sizes.lock().unwrap();
        assert!(sizes.iter().all(|&s| s <= 8), "{sizes:?}");
        assert!(sizes.len() < 40, "calls were batched: {sizes:?}");
    }
}
