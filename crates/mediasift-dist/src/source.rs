//! Where a job's input lives — a local file or an S3 object — and the allowlist of roots jobs
//! may read from. A job naming anything outside the allowlisted roots is rejected, never read.

use std::path::{Component, Path, PathBuf};

use crate::DistError;

/// A job's input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// An absolute, normalised local path.
    Local(PathBuf),
    S3 {
        bucket: String,
        key: String,
    },
}

impl Source {
    /// `s3://bucket/key`, or an absolute local path (`file://` accepted). `..` is resolved
    /// lexically so a path cannot climb out of a root by name.
    pub fn parse(uri: &str) -> Result<Source, DistError> {
        if let Some(rest) = uri.strip_prefix("s3://") {
            let (bucket, key) = rest.split_once('/').unwrap_or((rest, ""));
            if bucket.is_empty() {
                return Err(DistError::BadSource(uri.to_string(), "no bucket"));
            }
            return Ok(Source::S3 {
                bucket: bucket.to_string(),
                key: key.to_string(),
            });
        }
        let path = Path::new(uri.strip_prefix("file://").unwrap_or(uri));
        if !path.is_absolute() {
            return Err(DistError::BadSource(
                uri.to_string(),
                "local paths must be absolute",
            ));
        }
        Ok(Source::Local(normalize(path)))
    }

    pub fn uri(&self) -> String {
        match self {
            Source::Local(p) => p.display().to_string(),
            Source::S3 { bucket, key } => format!("s3://{bucket}/{key}"),
        }
    }
}

fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}

/// The roots jobs may read from.
#[derive(Debug, Clone, Default)]
pub struct Allowlist {
    roots: Vec<Source>,
}

impl Allowlist {
    pub fn new(roots: &[String]) -> Result<Allowlist, DistError> {
        let roots = roots
            .iter()
            .map(|r| {
                Source::parse(r).map(|s| match s {
                    // Symlinks in the root itself are fine: compare against where it leads.
                    Source::Local(p) => Source::Local(std::fs::canonicalize(&p).unwrap_or(p)),
                    s3 => s3,
                })
            })
            .collect::<Result<_, _>>()?;
        Ok(Allowlist { roots })
    }

    /// Whether `source` lies under a root. Local paths are compared after resolving symlinks,
    /// so a link inside a root pointing elsewhere is outside.
    pub fn allows(&self, source: &Source) -> bool {
        match source {
            Source::Local(p) => {
                let real = std::fs::canonicalize(p).unwrap_or_else(|_| p.clone());
                self.roots
                    .iter()
                    .any(|r| matches!(r, Source::Local(root) if real.starts_with(root)))
            }
            Source::S3 { bucket, key } => self.roots.iter().any(|r| match r {
                Source::S3 {
                    bucket: b,
                    key: prefix,
                } => {
                    b == bucket
                        && (prefix.is_empty()
                            || key.starts_with(&format!("{}/", prefix.trim_end_matches('/'))))
                }
                Source::Local(_) => false,
            }),
        }
    }

    pub fn describe(&self) -> String {
        if self.roots.is_empty() {
            return "(none configured)".into();
        }
        self.roots
            .iter()
            .map(Source::uri)
            .collect::<Vec<_>>()
            .join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dot_dot_cannot_climb_out_of_a_root() {
        let allow = Allowlist::new(&["/srv/media".into(), "s3://bkt/archive".into()]).unwrap();
        assert!(allow.allows(&Source::parse("/srv/media/a.jpg").unwrap()));
        assert!(!allow.allows(&Source::parse("/srv/media/../secrets/a.jpg").unwrap()));
        assert!(!allow.allows(&Source::parse("/srv/media-other/a.jpg").unwrap()));
        assert!(allow.allows(&Source::parse("s3://bkt/archive/x/y.png").unwrap()));
        assert!(!allow.allows(&Source::parse("s3://bkt/archive2/y.png").unwrap()));
        assert!(!allow.allows(&Source::parse("s3://other/archive/y.png").unwrap()));
        assert!(Source::parse("relative/a.jpg").is_err());
    }
}
