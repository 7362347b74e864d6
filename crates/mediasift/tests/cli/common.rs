use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

pub fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures/media")
        .canonicalize()
        .expect("fixtures exist")
}

/// Runs `mediasift ARGS` with a clean MEDIASIFT__* environment.
pub fn mediasift(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_mediasift"));
    cmd.args(args).env("RUST_LOG", "warn");
    for (k, _) in std::env::vars().filter(|(k, _)| k.starts_with("MEDIASIFT__")) {
        cmd.env_remove(k);
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("mediasift runs")
}

pub fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Analyzes `input` into `data`, returning the metrics file's counters.
pub fn analyze(input: &Path, data: &Path, extra: &[&str], env: &[(&str, &str)]) -> Metrics {
    let metrics = data.with_extension("prom");
    let mut args = vec![
        "analyze",
        input.to_str().expect("utf-8"),
        "--data",
        data.to_str().expect("utf-8"),
    ];
    args.extend(["--metrics-file", metrics.to_str().expect("utf-8")]);
    args.extend(extra);
    ok(&mediasift(&args, env));
    Metrics::parse(&std::fs::read_to_string(&metrics).expect("metrics written"))
}

/// Exported records keyed by path relative to `root`.
pub fn export(data: &Path, root: &Path) -> BTreeMap<String, Value> {
    let out = ok(&mediasift(
        &[
            "export",
            "--data",
            data.to_str().expect("utf-8"),
            "--format",
            "jsonl",
        ],
        &[],
    ));
    out.lines()
        .map(|line| {
            let v: Value =
                serde_json::from_str(line).unwrap_or_else(|e| panic!("bad JSON line {line}: {e}"));
            let path = v["path"].as_str().expect("path").to_string();
            let rel = Path::new(&path)
                .strip_prefix(root)
                .map(|p| p.to_string_lossy().into_owned())
                .unwrap_or(path);
            (rel, v)
        })
        .collect()
}

/// `mediasift_files_total` counters by outcome, summed over kinds.
#[derive(Debug, Default)]
pub struct Metrics {
    pub by_outcome: BTreeMap<String, u64>,
}

impl Metrics {
    fn parse(text: &str) -> Metrics {
        let mut m = Metrics::default();
        for line in text
            .lines()
            .filter(|l| l.starts_with("mediasift_files_total{"))
        {
            let outcome = line
                .split("outcome=\"")
                .nth(1)
                .and_then(|s| s.split('"').next())
                .expect("outcome label");
            let n: u64 = line
                .rsplit(' ')
                .next()
                .and_then(|v| v.parse().ok())
                .expect("value");
            *m.by_outcome.entry(outcome.to_string()).or_default() += n;
        }
        m
    }

    pub fn get(&self, outcome: &str) -> u64 {
        self.by_outcome.get(outcome).copied().unwrap_or(0)
    }
}

/// Regular, non-hidden files under a folder.
pub fn count_files(dir: &Path) -> usize {
    let mut n = 0;
    for entry in std::fs::read_dir(dir).expect("readable") {
        let entry = entry.expect("entry");
        if entry.file_name().to_string_lossy().starts_with('.') {
            continue;
        }
        let ft = entry.file_type().expect("type");
        if ft.is_dir() {
            n += count_files(&entry.path());
        } else if ft.is_file() {
            n += 1;
        }
    }
    n
}
