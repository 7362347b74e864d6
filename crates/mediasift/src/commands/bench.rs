//! `mediasift bench vision`: model throughput on this machine, side by side with the same-run
//! matmul peak and with onnxruntime on the same network and weights (see `bench_peer`).

use std::path::PathBuf;
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

    /// A row with the medians of ours and the peer's figures for `batch` over the rounds, and
    /// the median of the rounds' ratios (with their range when there are several).
    fn compared(&mut self, model: &str, pair: &Pair, unit: &str, note: String) {
        let ours = median(&pair.ours);
        let (theirs, ratio, note) = match &pair.theirs {
            Ok(theirs) if !theirs.is_empty() => {
                let ratios: Vec<f64> = pair.ours.iter().zip(theirs).map(|(o, t)| o / t).collect();
                let ratio = match min_max(&ratios) {
                    (lo, hi) if ratios.len() > 1 => {
                        format!("{:.2}× ({lo:.2}–{hi:.2})", median(&ratios))
                    }
                    _ => format!("{:.2}×", median(&ratios)),
                };
                (format!("{:.1} {unit}", median(theirs)), ratio, note)
            }
            Ok(_) => (String::new(), String::new(), "peer gave no figure".into()),
            Err(e) => ("unavailable".into(), String::new(), e.clone()),
        };
        self.0.add_row([
            model.into(),
            pair.batch.to_string(),
            format!("{ours:.1} {unit}"),
            theirs,
            ratio,
            note,
        ]);
    }
}

/// One batch size's figures, ours and the peer's, one per round.
struct Pair {
    batch: usize,
    ours: Vec<f64>,
    theirs: Result<Vec<f64>, String>,
}

/// Ours and the peer's figures per batch size over `rounds` rounds, each round the peer (all
/// batch sizes, one process) and then ours. On a shared machine speed drifts by ±15–30 % over
/// minutes, so the two sides of a ratio are measured next to each other and every round gives
/// its own ratio.
fn paired(
    rounds: usize,
    batches: &[usize],
    peer: impl Fn() -> Figures,
    mut ours: impl FnMut(usize) -> anyhow::Result<f64>,
) -> anyhow::Result<Vec<Pair>> {
    let mut pairs: Vec<Pair> = batches
        .iter()
        .map(|&batch| Pair {
            batch,
            ours: Vec::new(),
            theirs: Ok(Vec::new()),
        })
        .collect();
    for _ in 0..rounds.max(1) {
        let theirs = peer();
        for pair in &mut pairs {
            let figure = theirs.as_ref().map(|r| {
                r.get(&pair.batch.to_string())
                    .and_then(serde_json::Value::as_f64)
            });
            match (figure, &mut pair.theirs) {
                (Ok(Some(v)), Ok(all)) => all.push(v),
                (Ok(None), Ok(_)) => pair.theirs = Err("peer gave no figure".into()),
                (Err(e), Ok(_)) => pair.theirs = Err(e.clone()),
                (_, Err(_)) => {}
            }
            pair.ours.push(ours(pair.batch)?);
        }
    }
    Ok(pairs)
}

fn median(values: &[f64]) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

fn min_max(values: &[f64]) -> (f64, f64) {
    values
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &v| {
            (lo.min(v), hi.max(v))
        })
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
        nsfw_rows(&store, &peer, &args, secs, &mut rows)?;
    }
    if wanted(VisionBench::MobilenetV2) {
        mobilenet_rows(&store, &peer, &args, secs, peak, &mut rows)?;
    }
    if wanted(VisionBench::Minilm) {
        minilm_rows(&store, &peer, &args, secs, peak, &mut rows)?;
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
    args: &BenchArgs,
    secs: Duration,
    rows: &mut Rows,
) -> anyhow::Result<()> {
    let nsfw = OpenNsfw::load(&store.resolve(&catalog::OPEN_NSFW)?, &Device::Cpu)?;
    let pairs = image_pairs(peer, args, secs, peer.open_nsfw(), |x| {
        nsfw.scores(x).map(|_| ())
    })?;
    for pair in &pairs {
        // ~1.07 G multiply-adds per 224×224 image (ResNet-50 at half width).
        let note = format!("{:.1} GFLOP/s", median(&pair.ours) * 2.14);
        rows.compared("open_nsfw", pair, "img/s", note);
    }
    Ok(())
}

/// Ours (`run` on a batch) and onnxruntime's (`onnx`) images/s on random 224×224 images, per
/// batch size, in rounds.
fn image_pairs<E: std::error::Error + Send + Sync + 'static>(
    peer: &Peer,
    args: &BenchArgs,
    secs: Duration,
    onnx: Result<PathBuf, String>,
    run: impl Fn(&[Vec<f32>]) -> Result<(), E>,
) -> anyhow::Result<Vec<Pair>> {
    paired(
        args.rounds,
        &args.batches,
        || peer.measure(onnx.clone(), &args.batches, TOKENS),
        |b| {
            let inputs = random_inputs(b);
            per_second(secs, b, || run(&inputs))
        },
    )
}

fn mobilenet_rows(
    store: &ModelStore,
    peer: &Peer,
    args: &BenchArgs,
    secs: Duration,
    peak: f64,
    rows: &mut Rows,
) -> anyhow::Result<()> {
    let mobilenet = MobileNetV2::load(&store.resolve(&catalog::MOBILENET_V2)?, &Device::Cpu)?;
    let pairs = image_pairs(peer, args, secs, peer.mobilenet(), |x| {
        mobilenet.forward(x).map(|_| ())
    })?;
    for pair in &pairs {
        // 300 M multiply-adds per 224×224 image (Sandler et al., table 3).
        let gflops = median(&pair.ours) * 0.6;
        let note = format!(
            "{gflops:.1} GFLOP/s = {:.0}% of peak",
            100.0 * gflops / peak
        );
        rows.compared("mobilenet_v2", pair, "img/s", note);
    }
    Ok(())
}

fn minilm_rows(
    store: &ModelStore,
    peer: &Peer,
    args: &BenchArgs,
    secs: Duration,
    peak: f64,
    rows: &mut Rows,
) -> anyhow::Result<()> {
    let minilm_model = store.resolve(&catalog::MINILM)?;
    let minilm = TextEmbedder::load(&minilm_model, &Device::Cpu, Chunking::default())?;
    let onnx = peer.minilm(&minilm_model.dir.join("model.safetensors"));
    let windows: Vec<Vec<u32>> = (0..32)
        .map(|i| {
            (0..TOKENS)
                .map(|j| 1000 + ((i * 131 + j * 7) % 20000) as u32)
                .collect()
        })
        .collect();
    let pairs = paired(
        args.rounds,
        &[32],
        || peer.measure(onnx.clone(), &[32], TOKENS),
        |_| {
            per_second(secs, windows.len(), || {
                minilm.embed_windows(&windows).map(|_| ())
            })
        },
    )?;
    for pair in &pairs {
        // 2 FLOP per weight per token over the encoder's ~10.6 M matmul weights, plus attention.
        let gflops =
            median(&pair.ours) * TOKENS as f64 * (2.0 * 10.6e6 + 6.0 * 2.0 * 2.0 * 128.0 * 384.0)
                / 1e9;
        let note = format!(
            "{TOKENS} tokens each; {gflops:.1} GFLOP/s = {:.0}% of peak",
            100.0 * gflops / peak
        );
        rows.compared("all-MiniLM-L6-v2", pair, "sentences/s", note);
    }
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
