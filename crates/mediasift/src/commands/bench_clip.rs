//! CLIP ViT-B/32 rows of `mediasift bench vision`: model-only throughput per batch size,
//! sustained over many images, and end to end from JPEG files through `analyze` (decode,
//! resize and crop overlapped with inference by the embedded pipeline), all on the real
//! architecture with random weights (no registry carries the weights; speed does not depend
//! on their values).

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Context;
use mediasift_core::{OcrMode, RawConfig};
use mediasift_models::Clip;
use mediasift_models::clip::write_random_checkpoint_of;

use super::bench::{Rows, per_second, random_inputs};

/// FLOP per 224×224 image through CLIP ViT-B/32's vision tower and projection.
const GFLOP_PER_IMAGE: f64 = 8.8;
const WORDS: &[&str] = &["a", "photo", "of", "cat", "dog"];

pub async fn rows(
    raw: &RawConfig,
    rows: &mut Rows,
    peak: f64,
    batches: &[usize],
    secs: Duration,
    images: usize,
) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let checkpoint = dir.path().join("clip");
    write_random_checkpoint_of(&checkpoint, &serde_json::json!({}), WORDS)?;
    let resolved = mediasift_models::ResolvedModel {
        id: mediasift_models::catalog::CLIP_VIT_B32.id.into(),
        dir: checkpoint.clone(),
        source: mediasift_models::ModelSource::Config,
        sha256: String::new(),
        size_bytes: 0,
    };
    let clip = Clip::load(&resolved, &candle_core::Device::Cpu)?;
    let name = "clip-vit-base-patch32 (random weights)";
    let of_peak = |ips: f64| {
        format!(
            "{:.1} GFLOP/s = {:.0}% of peak",
            ips * GFLOP_PER_IMAGE,
            100.0 * ips * GFLOP_PER_IMAGE / peak
        )
    };
    for &b in batches {
        let inputs = random_inputs(b);
        let started = Instant::now();
        clip.embed_images(&inputs[..1])?;
        let latency = started.elapsed();
        let ours = per_second(secs, b, || clip.embed_images(&inputs).map(|_| ()))?;
        rows.ours(
            name,
            &b.to_string(),
            format!("{ours:.1} img/s"),
            format!(
                "{}; batch-1 latency {:.0} ms",
                of_peak(ours),
                latency.as_secs_f64() * 1e3
            ),
        );
    }
    // Sustained: `images` images in batches of 32, model only.
    let batch = random_inputs(32);
    let started = Instant::now();
    let mut done = 0;
    while done < images {
        let n = (images - done).min(32);
        clip.embed_images(&batch[..n])?;
        done += n;
    }
    let sustained = images as f64 / started.elapsed().as_secs_f64();
    rows.ours(
        name,
        &format!("{images} images, 32"),
        format!("{sustained:.1} img/s"),
        format!("sustained, model only; {}", of_peak(sustained)),
    );
    // End to end: distinct JPEG files through `analyze` with only CLIP enabled.
    let inputs = dir.path().join("jpegs");
    let pixels = write_jpegs(&inputs, images)?;
    // What the pipeline adds per image, on one core: read, sniff, decode, resize and crop.
    let prep = preprocessing_secs(raw, &clip, &inputs)?;
    // Both cores run the model; each image's preprocessing takes one core for `prep` seconds
    // out of what the model would have had: the best end to end can do is this share.
    let model_secs = 1.0 / sustained;
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
    let ceiling = model_secs / (model_secs + prep / cores);
    rows.ours(
        name,
        &format!("{images} JPEGs, preprocessing"),
        format!("{:.1} ms/img", prep * 1e3),
        format!(
            "decode + resize + crop on one core; end to end can reach at most {:.0}% of sustained",
            100.0 * ceiling
        ),
    );
    drop(clip);
    let mut raw = raw.clone();
    let a = &mut raw.analyzers;
    (a.metadata, a.phash, a.loudness, a.thumbnail) = (false, false, false, false);
    (a.text_embedding, a.tags, a.nsfw, a.transcript) = (false, false, false, false);
    a.clip = true;
    raw.ocr.mode = OcrMode::Never;
    raw.models
        .paths
        .insert(resolved.id.clone(), checkpoint.clone());
    // Forward passes and their total time on the CLIP model, process-wide.
    let clip_counters = || {
        let m = mediasift_pipeline::inference_metrics();
        (
            m.batch_size.with_label_values(&["clip"]).get_sample_count(),
            m.seconds.with_label_values(&["clip"]).get_sample_sum(),
        )
    };
    let (batches_before, busy_before) = clip_counters();
    let (elapsed, summary) =
        super::bench_dist::analyze(raw, &dir.path().join("run"), &inputs).await?;
    let (batches_after, busy_after) = clip_counters();
    let (batches, busy) = (batches_after - batches_before, busy_after - busy_before);
    let e2e = images as f64 / elapsed.as_secs_f64();
    let analyzed: u64 = summary.kinds.values().map(|c| c.analyzed).sum();
    anyhow::ensure!(
        analyzed == images as u64,
        "end-to-end run analyzed {analyzed} of {images} files"
    );
    rows.ours(
        name,
        &format!("{images} JPEGs, analyze"),
        format!("{e2e:.1} img/s"),
        format!(
            "end to end = {:.0}% of sustained model-only (goal 90%); mean {:.1} MP per JPEG; \
             mean batch {:.1}, model busy {:.0}% of the run",
            100.0 * e2e / sustained,
            pixels as f64 / images as f64 / 1e6,
            images as f64 / batches.max(1) as f64,
            100.0 * busy / elapsed.as_secs_f64()
        ),
    );
    Ok(())
}

/// Mean seconds per file to decode it as the pipeline does and preprocess it for CLIP, one core.
fn preprocessing_secs(raw: &RawConfig, clip: &Clip, dir: &Path) -> anyhow::Result<f64> {
    let cfg = raw.clone().validate()?;
    let tools = mediasift_media::Tools::detect(cfg.video());
    let mut files: Vec<_> = std::fs::read_dir(dir)?
        .map(|e| e.map(|e| e.path()))
        .collect::<Result<_, _>>()?;
    files.sort();
    let started = Instant::now();
    for f in &files {
        let deadline = Instant::now() + Duration::from_secs(60);
        let intake = mediasift_media::decode_file(f, &cfg, &tools, deadline)?;
        let mediasift_media::Decoded::Image(img) = &intake.decoded else {
            anyhow::bail!("{} did not decode as an image", f.display());
        };
        std::hint::black_box(clip.preprocess(&img.rgb));
    }
    Ok(started.elapsed().as_secs_f64() / files.len().max(1) as f64)
}

/// `n` distinct JPEGs (quality 90) made from the fixture photos, each with one pixel changed
/// so no two share a content hash (the pipeline would reuse the result of a duplicate).
/// Returns the total pixel count.
fn write_jpegs(dir: &Path, n: usize) -> anyhow::Result<u64> {
    std::fs::create_dir_all(dir)?;
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/media/images");
    let photos: Vec<image::RgbImage> = [
        "photo_02.jpg",
        "photo_10.jpg",
        "photo_13.jpg",
        "photo_15.jpg",
    ]
    .iter()
    .map(|name| {
        image::open(fixtures.join(name))
            .map(|i| i.to_rgb8())
            .with_context(|| format!("{name} (run from the repository root)"))
    })
    .collect::<anyhow::Result<_>>()?;
    let mut pixels = 0;
    for i in 0..n {
        let mut img = photos[i % photos.len()].clone();
        let (w, h) = img.dimensions();
        let v = (i / photos.len()) as u32;
        img.put_pixel(v % w, (v / w) % h, image::Rgb([(v % 251) as u8, 7, 200]));
        pixels += u64::from(w) * u64::from(h);
        let file = std::fs::File::create(dir.join(format!("{i:05}.jpg")))?;
        image::codecs::jpeg::JpegEncoder::new_with_quality(std::io::BufWriter::new(file), 90)
            .encode_image(&img)?;
    }
    Ok(pixels)
}
