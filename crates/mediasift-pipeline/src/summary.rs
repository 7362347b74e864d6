//! Per-kind counts of a run, and the most common reasons files failed.

use std::collections::BTreeMap;
use std::time::Duration;

use mediasift_core::{ErrorKind, MediaKind};

/// What happened to one file in a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileOutcome {
    /// Decoded and analyzed now.
    Analyzed,
    /// Same content already analyzed under another path with the same pipeline: results reused.
    Reused,
    /// Unchanged since the last run.
    Skipped,
    Failed(ErrorKind),
}

impl FileOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            FileOutcome::Analyzed => "analyzed",
            FileOutcome::Reused => "reused",
            FileOutcome::Skipped => "skipped",
            FileOutcome::Failed(_) => "failed",
        }
    }
}

/// Counts for one media kind.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KindCounts {
    pub analyzed: u64,
    pub reused: u64,
    pub skipped: u64,
    pub failed: u64,
    pub reasons: BTreeMap<ErrorKind, u64>,
}

/// The outcome of a whole run.
#[derive(Debug, Clone, Default)]
pub struct Summary {
    pub kinds: BTreeMap<MediaKind, KindCounts>,
    /// Inputs or entries that could not be walked (missing, unreadable, symlinks leaving the root).
    pub walk_skipped: usize,
    pub elapsed: Duration,
}

impl Summary {
    pub fn record(&mut self, kind: MediaKind, outcome: FileOutcome) {
        let c = self.kinds.entry(kind).or_default();
        match outcome {
            FileOutcome::Analyzed => c.analyzed += 1,
            FileOutcome::Reused => c.reused += 1,
            FileOutcome::Skipped => c.skipped += 1,
            FileOutcome::Failed(reason) => {
                c.failed += 1;
                *c.reasons.entry(reason).or_default() += 1;
            }
        }
    }

    pub fn total(&self) -> KindCounts {
        let mut t = KindCounts::default();
        for c in self.kinds.values() {
            t.analyzed += c.analyzed;
            t.reused += c.reused;
            t.skipped += c.skipped;
            t.failed += c.failed;
            for (r, n) in &c.reasons {
                *t.reasons.entry(*r).or_default() += n;
            }
        }
        t
    }
}

impl KindCounts {
    pub fn files(&self) -> u64 {
        self.analyzed + self.reused + self.skipped + self.failed
    }

    /// Error kinds by descending count (ties by name), at most `n`.
    pub fn top_reasons(&self, n: usize) -> Vec<(ErrorKind, u64)> {
        let mut v: Vec<_> = self.reasons.iter().map(|(k, c)| (*k, *c)).collect();
        v.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        v.truncate(n);
        v
    }
}
