//! CLIP's loading, preprocessing and inference path on a small random-weight checkpoint in the
//! Hugging Face layout (no registry carries real CLIP weights).
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use candle_core::Device;
use mediasift_models::ModelSource as Source;
use mediasift_models::clip::{MEAN, STD, preprocess, write_random_checkpoint};
use mediasift_models::{Clip, ResolvedModel};

fn model() -> (tempfile::TempDir, Clip) {
    let dir = tempfile::tempdir().unwrap();
    write_random_checkpoint(dir.path(), &["a", "photo", "of", "cat", "dog", "car"]).unwrap();
    let resolved = ResolvedModel {
        id: "random-clip".into(),
        dir: dir.path().to_path_buf(),
        source: Source::Config,
        sha256: mediasift_models::sha256_file(&dir.path().join("model.safetensors")).unwrap(),
        size_bytes: 0,
    };
    let clip = Clip::load(&resolved, &Device::Cpu).unwrap();
    (dir, clip)
}

fn photo(seed: u32) -> image::RgbImage {
    image::RgbImage::from_fn(48, 40, |x, y| {
        let v = (x * 7 + y * 13 + seed * 31) % 256;
        image::Rgb([v as u8, (255 - v) as u8, ((v * seed) % 256) as u8])
    })
}

#[test]
fn a_batch_equals_single_calls_and_embeddings_are_unit_vectors() {
    let (_dir, clip) = model();
    assert_eq!(clip.dims(), 32);
    let inputs: Vec<Vec<f32>> = (1..=4).map(|s| clip.preprocess(&photo(s))).collect();
    let batch = clip.embed_images(&inputs).unwrap();
    assert_eq!(batch.len(), 4);
    for (input, batched) in inputs.iter().zip(&batch) {
        let single = clip.embed_images(std::slice::from_ref(input)).unwrap();
        let diff = single[0]
            .iter()
            .zip(batched)
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        assert!(diff < 1e-5, "batch vs single: {diff}");
        let norm: f32 = batched.iter().map(|x| x * x).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-5);
    }
    // Different images, different embeddings.
    let d: f32 = batch[0]
        .iter()
        .zip(&batch[1])
        .map(|(a, b)| (a - b).abs())
        .sum();
    assert!(d > 1e-3);
}

#[test]
fn texts_embed_deterministically_and_zero_shot_is_a_distribution() {
    let (_dir, clip) = model();
    let texts = vec![
        "a photo of cat".to_string(),
        "a photo of dog".into(),
        "car".into(),
    ];
    let t = clip.embed_texts(&texts).unwrap();
    let again = clip.embed_texts(&texts[..1]).unwrap();
    assert_eq!(t[0], again[0]);
    assert_ne!(t[0], t[1]);
    let image = &clip.embed_images(&[clip.preprocess(&photo(3))]).unwrap()[0];
    let probs = clip.zero_shot(image, &t);
    assert_eq!(probs.len(), 3);
    assert!((probs.iter().sum::<f32>() - 1.0).abs() < 1e-5);
    assert!(probs.iter().all(|p| *p > 0.0 && *p < 1.0));
}

#[test]
fn preprocessing_scales_the_short_side_crops_the_center_and_normalises() {
    // Left half red, right half blue, 64×32: the short side is already 32, so the crop is the
    // middle 32 columns: red on its left half, blue on its right.
    let img = image::RgbImage::from_fn(64, 32, |x, _| {
        if x < 32 {
            image::Rgb([255, 0, 0])
        } else {
            image::Rgb([0, 0, 255])
        }
    });
    let x = preprocess(&img, 32);
    assert_eq!(x.len(), 3 * 32 * 32);
    let at = |c: usize, y: usize, x_: usize| x[c * 32 * 32 + y * 32 + x_];
    let norm = |c: usize, v: f32| (v / 255.0 - MEAN[c]) / STD[c];
    assert!((at(0, 10, 2) - norm(0, 255.0)).abs() < 1e-5);
    assert!((at(2, 10, 2) - norm(2, 0.0)).abs() < 1e-5);
    assert!((at(0, 10, 29) - norm(0, 0.0)).abs() < 1e-5);
    assert!((at(2, 10, 29) - norm(2, 255.0)).abs() < 1e-5);
    // A flat grey image stays flat at any size.
    let grey = image::RgbImage::from_pixel(300, 200, image::Rgb([128, 128, 128]));
    let g = preprocess(&grey, 32);
    assert!(g[..1024].iter().all(|v| (v - norm(0, 128.0)).abs() < 1e-5));
}
