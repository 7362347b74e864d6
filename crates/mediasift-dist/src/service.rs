//! What every long-running command shares: `/metrics` and `/healthz` over HTTP, and a shutdown
//! signal (SIGTERM or Ctrl-C) that stops pulling new work.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::routing::get;
use tokio::sync::watch;

/// Set once SIGTERM or Ctrl-C arrives; loops check it between batches.
#[derive(Debug, Clone)]
pub struct Shutdown {
    flag: Arc<AtomicBool>,
    rx: watch::Receiver<bool>,
}

impl Shutdown {
    /// Listens for SIGTERM and Ctrl-C.
    pub fn on_signals() -> Shutdown {
        let (tx, rx) = watch::channel(false);
        let flag = Arc::new(AtomicBool::new(false));
        let f = flag.clone();
        tokio::spawn(async move {
            let term = async {
                match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                    Ok(mut s) => {
                        s.recv().await;
                    }
                    Err(_) => std::future::pending::<()>().await,
                }
            };
            tokio::select! {
                _ = term => {}
                _ = tokio::signal::ctrl_c() => {}
            }
            tracing::info!("Shutting down: no new work is pulled; finishing what is in flight");
            f.store(true, Ordering::SeqCst);
            let _ = tx.send(true);
        });
        Shutdown { flag, rx }
    }

    /// A shutdown triggered by calling [`Shutdown::trigger`] (benchmarks, embedding).
    pub fn manual() -> (Shutdown, impl Fn() + Send + Sync + 'static) {
        let (tx, rx) = watch::channel(false);
        let flag = Arc::new(AtomicBool::new(false));
        let f = flag.clone();
        let trigger = move || {
            f.store(true, Ordering::SeqCst);
            let _ = tx.send(true);
        };
        (Shutdown { flag, rx }, trigger)
    }

    pub fn requested(&self) -> bool {
        self.flag.load(Ordering::SeqCst)
    }

    /// Resolves when shutdown is requested.
    pub async fn wait(&self) {
        let mut rx = self.rx.clone();
        while !*rx.borrow() {
            if rx.changed().await.is_err() {
                std::future::pending::<()>().await;
            }
        }
    }
}

/// Serves `/metrics` (Prometheus text) and `/healthz` on `addr` until shutdown. An empty
/// address serves nothing.
pub async fn serve_http(
    addr: &str,
    registry: prometheus::Registry,
    shutdown: Shutdown,
) -> anyhow::Result<()> {
    if addr.is_empty() {
        return Ok(());
    }
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| {
            anyhow::anyhow!(
                "cannot serve metrics on {addr}: {e} (several components on one host need one \
                 distributed.metrics_addr each, e.g. MEDIASIFT__DISTRIBUTED__METRICS_ADDR=127.0.0.1:9465, \
                 or an empty one to serve none)"
            )
        })?;
    tracing::info!(addr = %listener.local_addr()?, "Serving /metrics and /healthz");
    let app = Router::new()
        .route(
            "/metrics",
            get(move || {
                let registry = registry.clone();
                async move { mediasift_pipeline::render_metrics(&registry) }
            }),
        )
        .route("/healthz", get(|| async { "ok\n" }));
    tokio::spawn(async move {
        let _ = axum::serve(listener, app)
            .with_graceful_shutdown(async move { shutdown.wait().await })
            .await;
    });
    Ok(())
}
