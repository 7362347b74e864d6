//! Progress of a run: an indicatif bar on a terminal (files/s, ETA, failures so far), periodic
//! structured log lines otherwise.

use std::io::IsTerminal;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

const LOG_EVERY: Duration = Duration::from_secs(10);

/// Reports progress to a human or to the logs.
#[derive(Debug, Clone)]
pub struct Progress {
    bar: Option<ProgressBar>,
    found: Arc<AtomicU64>,
    done: Arc<AtomicU64>,
    failed: Arc<AtomicU64>,
    last_log: Arc<Mutex<Instant>>,
    started: Instant,
}

impl Progress {
    /// A bar when stderr is a terminal and `enabled`, log lines otherwise.
    pub fn new(enabled: bool) -> Progress {
        let bar = (enabled && std::io::stderr().is_terminal()).then(|| {
            let bar = ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::stderr());
            let style = ProgressStyle::with_template(
                "{spinner} [{elapsed_precise}] {wide_bar} {pos}/{len} files  {per_sec}  ETA {eta}  {msg}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar());
            bar.set_style(style);
            bar.enable_steady_tick(Duration::from_millis(200));
            bar
        });
        Progress {
            bar,
            found: Arc::default(),
            done: Arc::default(),
            failed: Arc::default(),
            last_log: Arc::new(Mutex::new(Instant::now())),
            started: Instant::now(),
        }
    }

    /// One more file discovered.
    pub fn found(&self) {
        self.found.fetch_add(1, Ordering::Relaxed);
        if let Some(bar) = &self.bar {
            bar.inc_length(1);
        }
    }

    /// One more file finished.
    pub fn finished(&self, failed: bool) {
        let done = self.done.fetch_add(1, Ordering::Relaxed) + 1;
        let failures = if failed {
            self.failed.fetch_add(1, Ordering::Relaxed) + 1
        } else {
            self.failed.load(Ordering::Relaxed)
        };
        match &self.bar {
            Some(bar) => {
                bar.inc(1);
                if failed {
                    bar.set_message(format!("failed: {failures}"));
                }
            }
            None => {
                let Ok(mut last) = self.last_log.lock() else {
                    return;
                };
                if last.elapsed() >= LOG_EVERY {
                    *last = Instant::now();
                    let secs = self.started.elapsed().as_secs_f64().max(1e-3);
                    tracing::info!(
                        done,
                        found = self.found.load(Ordering::Relaxed),
                        failed = failures,
                        files_per_sec = format!("{:.1}", done as f64 / secs),
                        "Analyzing"
                    );
                }
            }
        }
    }

    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}
