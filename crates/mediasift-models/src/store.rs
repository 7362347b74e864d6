//! Finding a model's files: explicit path → models_dir → hub cache → hub download.

use std::collections::BTreeMap;
use std::fmt;
use std::fs::File;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::{ModelError, ModelSpec};

/// Where a model's files were found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedModel {
    pub id: String,
    /// Folder holding every file of the spec.
    pub dir: PathBuf,
    pub source: Source,
    /// sha256 of the weights file.
    pub sha256: String,
    pub size_bytes: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Config,
    ModelsDir,
    HubCache,
    HubDownload,
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Source::Config => "config path",
            Source::ModelsDir => "models_dir",
            Source::HubCache => "hf-hub cache",
            Source::HubDownload => "hf-hub download",
        })
    }
}

/// The configured model locations.
#[derive(Debug, Clone)]
pub struct ModelStore {
    models_dir: PathBuf,
    explicit: BTreeMap<String, PathBuf>,
    allow_download: bool,
}

impl ModelStore {
    pub fn new(
        models_dir: PathBuf,
        explicit: BTreeMap<String, PathBuf>,
        allow_download: bool,
    ) -> ModelStore {
        ModelStore {
            models_dir,
            explicit,
            allow_download,
        }
    }

    pub fn models_dir(&self) -> &Path {
        &self.models_dir
    }

    /// Finds every file of `spec`, verifying pinned checksums.
    pub fn resolve(&self, spec: &ModelSpec) -> Result<ResolvedModel, ModelError> {
        let mut looked = Vec::new();
        if let Some(dir) = self.explicit.get(spec.id) {
            looked.push(dir.display().to_string());
            if has_files(dir, spec) {
                return finish(spec, dir.clone(), Source::Config);
            }
        }
        let dir = self.models_dir.join(spec.id);
        looked.push(dir.display().to_string());
        if has_files(&dir, spec) {
            return finish(spec, dir, Source::ModelsDir);
        }
        if let Some(repo) = spec.hf_repo {
            looked.push(format!("hf-hub cache for {repo}"));
            if let Some(dir) = hub_cache_dir(spec, repo) {
                return finish(spec, dir, Source::HubCache);
            }
            if self.allow_download {
                let dir = hub_download(spec, repo)?;
                return finish(spec, dir, Source::HubDownload);
            }
        }
        Err(ModelError::NotInstalled {
            id: spec.id.into(),
            looked: looked.join(", "),
        })
    }
}

fn has_files(dir: &Path, spec: &ModelSpec) -> bool {
    spec.files.iter().all(|f| dir.join(f.name).is_file())
}

fn finish(spec: &ModelSpec, dir: PathBuf, source: Source) -> Result<ResolvedModel, ModelError> {
    let mut weights_sha = String::new();
    for file in spec.files {
        let path = dir.join(file.name);
        let pinned = file.sha256;
        // Hashing 90 MB takes ~0.2 s; only pinned files and the weights are hashed.
        if pinned.is_none() && file.name != spec.weights {
            continue;
        }
        let actual = sha256_file(&path)?;
        if let Some(expected) = pinned
            && expected != actual
        {
            return Err(ModelError::Checksum {
                id: spec.id.into(),
                path,
                actual,
                expected: expected.into(),
            });
        }
        if file.name == spec.weights {
            weights_sha = actual;
        }
    }
    let size_bytes = std::fs::metadata(dir.join(spec.weights))
        .map(|m| m.len())
        .unwrap_or(0);
    Ok(ResolvedModel {
        id: spec.id.into(),
        dir,
        source,
        sha256: weights_sha,
        size_bytes,
    })
}

/// Hex sha256 of a file.
pub fn sha256_file(path: &Path) -> Result<String, ModelError> {
    let io = |source| ModelError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut file = File::open(path).map_err(io)?;
    let mut hasher = Sha256::new();
    std::io::copy(&mut file, &mut hasher).map_err(io)?;
    Ok(hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect())
}

/// The snapshot folder of the hub cache when it holds every file of the spec.
fn hub_cache_dir(spec: &ModelSpec, repo: &str) -> Option<PathBuf> {
    let repo = hf_hub::Cache::from_env().model(repo.to_string());
    let first = repo.get(spec.files.first()?.name)?;
    let dir = first.parent()?.to_path_buf();
    has_files(&dir, spec).then_some(dir)
}

fn hub_download(spec: &ModelSpec, repo: &str) -> Result<PathBuf, ModelError> {
    let fail = |reason: String| ModelError::Fetch {
        id: spec.id.into(),
        reason,
    };
    let api = hf_hub::api::sync::Api::new().map_err(|e| fail(e.to_string()))?;
    let repo = api.model(repo.to_string());
    let mut dir = None;
    for file in spec.files {
        let path = repo
            .get(file.name)
            .map_err(|e| fail(format!("{}: {e}", file.name)))?;
        dir = path.parent().map(Path::to_path_buf);
    }
    dir.ok_or_else(|| fail("the model has no files".into()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::{ModelFile, ModelSpec};

    const TINY: ModelSpec = ModelSpec {
        id: "tiny",
        hf_repo: None,
        files: &[
            ModelFile {
                name: "w.bin",
                sha256: Some("2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"),
            },
            ModelFile {
                name: "extra.json",
                sha256: None,
            },
        ],
        weights: "w.bin",
        pypi: &[],
        assemble: crate::catalog::Assemble::None,
        license: "test",
    };

    #[test]
    fn explicit_path_wins_then_models_dir_and_checksums_are_enforced() {
        let root = tempfile::tempdir().unwrap();
        let (explicit, models) = (root.path().join("explicit"), root.path().join("models"));
        for dir in [explicit.clone(), models.join("tiny")] {
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(dir.join("w.bin"), "hello").unwrap();
            std::fs::write(dir.join("extra.json"), "{}").unwrap();
        }
        let paths = BTreeMap::from([("tiny".to_string(), explicit.clone())]);
        let r = ModelStore::new(models.clone(), paths, false)
            .resolve(&TINY)
            .unwrap();
        assert_eq!(
            (r.source, r.dir.as_path(), r.size_bytes),
            (Source::Config, explicit.as_path(), 5)
        );
        let r = ModelStore::new(models.clone(), BTreeMap::new(), false)
            .resolve(&TINY)
            .unwrap();
        assert_eq!(r.source, Source::ModelsDir);

        std::fs::write(models.join("tiny/w.bin"), "tampered").unwrap();
        let err = ModelStore::new(models.clone(), BTreeMap::new(), false)
            .resolve(&TINY)
            .unwrap_err();
        assert!(matches!(err, ModelError::Checksum { .. }), "{err}");

        std::fs::remove_file(models.join("tiny/w.bin")).unwrap();
        let err = ModelStore::new(models, BTreeMap::new(), false)
            .resolve(&TINY)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("model tiny is not installed") && err.contains("mediasift models fetch"),
            "{err}"
        );
    }
}
