//! `mediasift bench vision`: model throughput on this machine, side by side with the same-run
//! matmul peak and with onnxruntime on the same network and weights (see `bench_peer`).

use std::time::{Duration, Instant};

use candle_core::{Device, Tensor};
use comfy_table::{Table, presets::UTF8_FULL_CONDENSED};
use mediasift_models::{Chunking, MobileNetV2, ModelStore, OpenNsfw, TextEmbedder, catalog};

use super::bench_peer::{Figures, Peer};
use crate::cli::{BenchArgs, GlobalArgs, VisionBench};
use crate::context;

const SIDE: usize = 224;
const TOKENS: usize = 128;

/// The printed table: ours, the peer's figure and their ratio per row.
pub struct Rows(Table);

impl Rows {
    fn new() -> Rows {
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
        Rows(t)
    }

    /// A row without a peer figure.
    pub fn ours(&mut self, model: &str, batch: &str, ours: String, note: String) {
        self.0.add_row([
            model.into(),
            batch.into(),
            ours,
            String::new(),
            String::new(),
            note,
        ]);
    }

    /// A row with the peer's figure for `batch` and ours / theirs.
    fn compared(
        &mut self,
        model: &str,
        batch: usize,
        ours: f64,
        unit: &str,
        peer: &Figures,
        note: String,
    ) {
        let theirs = peer.as_ref().map(|r| {
            r.get(&batch.to_string())
                .and_then(serde_json::Value::as_f64)
        });
        let (theirs, ratio, note) = match theirs {
            Ok(Some(v)) => (format!("{v:.1} {unit}"), format!("{:.2}×", ours / v), note),
            Ok(None) => (String::new(), String::new(), "peer gave no figure".into()),
            Err(e) => ("unavailable".into(), String::new(), e.clone()),
        };
        self.0.add_row([
            model.into(),
            batch.to_string(),
            format!("{ours:.1} {unit}"),
            theirs,
            ratio,
            note,
        ]);
    }
}

pub async fn vision(g: &GlobalArgs, args: BenchArgs) -> anyhow::Result<()> {
    let cfg = context::load_config(g)?;
    let store = mediasift_pipeline::model_store(&cfg);
    let secs = Duration::from_secs_f64(args.seconds);
    let batches: Vec<usize> = args.batches.clone();
    let peer = Peer::new(&args)?;
    let mut rows = Rows::new();

    let peak = matmul_gflops(secs)?;
    rows.ours(
        "f32 matmul 1024³ (candle)",
        "-",
        format!("{peak:.1} GFLOP/s"),
        "same-run peak: the % of peak figures below".into(),
    );
    match peer
        .numpy_matmul(1024)
        .map(|r| r.get("1024").and_then(serde_json::Value::as_f64))
    {
        Ok(Some(blas)) => rows.ours(
            "f32 matmul 1024³ (numpy / OpenBLAS)",
            "-",
            format!("{blas:.1} GFLOP/s"),
            format!(
                "second reference: candle's gemm = {:.0}% of it",
                100.0 * peak / blas
            ),
        ),
        Ok(None) => {}
        Err(e) => rows.ours("f32 matmul 1024³ (numpy)", "-", "unavailable".into(), e),
    }

    let wanted = |m: VisionBench| args.models.contains(&m);
    if wanted(VisionBench::OpenNsfw) {
        nsfw_rows(&store, &peer, &batches, secs, &mut rows)?;
    }
    if wanted(VisionBench::MobilenetV2) {
        mobilenet_rows(&store, &peer, &batches, secs, peak, &mut rows)?;
    }
    if wanted(VisionBench::Minilm) {
        minilm_rows(&store, &peer, secs, peak, &mut rows)?;
    }
    if wanted(VisionBench::Clip) {
        super::bench_clip::rows(cfg.raw(), &mut rows, peak, &batches, secs, args.clip_images)
            .await?;
    }

    println!("{}", rows.0);
    println!(
        "threads: candle uses every core ({}); onnxruntime intra_op_num_threads = {}",
        std::thread::available_parallelism().map_or(1, |n| n.get()),
        args.threads
    );
    Ok(())
}

fn nsfw_rows(
    store: &ModelStore,
    peer: &Peer,
    batches: &[usize],
    secs: Duration,
    rows: &mut Rows,
) -> anyhow::Result<()> {
    let nsfw = OpenNsfw::load(&store.resolve(&catalog::OPEN_NSFW)?, &Device::Cpu)?;
    let theirs = peer.measure(peer.open_nsfw(), batches, TOKENS);
    for &b in batches {
        let inputs = random_inputs(b);
        let ours = per_second(secs, b, || nsfw.scores(&inputs).map(|_| ()))?;
        // ~1.07 G multiply-adds per 224×224 image (ResNet-50 at half width).
        let note = format!("{:.1} GFLOP/s", ours * 2.14);
        rows.compared("open_nsfw", b, ours, "img/s", &theirs, note);
    }
    Ok(())
}

fn mobilenet_rows(
    store: &ModelStore,
    peer: &Peer,
    batches: &[usize],
    secs: Duration,
    peak: f64,
    rows: &mut Rows,
) -> anyhow::Result<()> {
    let mobilenet = MobileNetV2::load(&store.resolve(&catalog::MOBILENET_V2)?, &Device::Cpu)?;
    let theirs = peer.measure(peer.mobilenet(), batches, TOKENS);
    for &b in batches {
        let inputs = random_inputs(b);
        let ours = per_second(secs, b, || mobilenet.forward(&inputs).map(|_| ()))?;
        // 300 M multiply-adds per 224×224 image (Sandler et al., table 3).
        let gflops = ours * 0.6;
        let note = format!(
            "{gflops:.1} GFLOP/s = {:.0}% of peak",
            100.0 * gflops / peak
        );
        rows.compared("mobilenet_v2", b, ours, "img/s", &theirs, note);
    }
    Ok(())
}

fn minilm_rows(
    store: &ModelStore,
    peer: &Peer,
    secs: Duration,
    peak: f64,
    rows: &mut Rows,
) -> anyhow::Result<()> {
    let minilm_model = store.resolve(&catalog::MINILM)?;
    let minilm = TextEmbedder::load(&minilm_model, &Device::Cpu, Chunking::default())?;
    let theirs = peer.measure(
        peer.minilm(&minilm_model.dir.join("model.safetensors")),
        &[32],
        TOKENS,
    );
    let windows: Vec<Vec<u32>> = (0..32)
        .map(|i| {
            (0..TOKENS)
                .map(|j| 1000 + ((i * 131 + j * 7) % 20000) as u32)
                .collect()
        })
        .collect();
    let ours = per_second(secs, windows.len(), || {
        minilm.embed_windows(&windows).map(|_| ())
    })?;
    // 2 FLOP per weight per token over the encoder's ~10.6 M matmul weights, plus attention.
    let gflops = ours * TOKENS as f64 * (2.0 * 10.6e6 + 6.0 * 2.0 * 2.0 * 128.0 * 384.0) / 1e9;
    let note = format!(
        "{TOKENS} tokens each; {gflops:.1} GFLOP/s = {:.0}% of peak",
        100.0 * gflops / peak
    );
    rows.compared("all-MiniLM-L6-v2", 32, ours, "sentences/s", &theirs, note);
    Ok(())
}

pub fn random_inputs(batch: usize) -> Vec<Vec<f32>> {
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
pub fn per_second<E: std::error::Error + Send + Sync + 'static>(
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
