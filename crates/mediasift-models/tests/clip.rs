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

fn repo(rel: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(rel)
}

fn reference() -> serde_json::Value {
    let text = std::fs::read_to_string(repo(
        "crates/mediasift-models/tests/fixtures/clip_reference.json",
    ))
    .unwrap();
    serde_json::from_str(&text).unwrap()
}

/// The photo as the pipeline decodes it (EXIF orientation applied, CMYK / 16-bit / alpha
/// converted), then CLIP's preprocessing.
fn pipeline_input(name: &str) -> (image::RgbImage, Vec<f32>) {
    let cfg = mediasift_core::RawConfig::default().validate().unwrap();
    let tools = mediasift_media::Tools::detect(cfg.video());
    let path = repo("tests/fixtures/media/images").join(name);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let intake = mediasift_media::decode_file(&path, &cfg, &tools, deadline).unwrap();
    let mediasift_media::Decoded::Image(img) = intake.decoded else {
        panic!("{name} is not an image");
    };
    let crop = mediasift_models::clip::center_crop(&img.rgb, 224);
    (crop.clone(), mediasift_models::clip::normalise(&crop))
}

#[test]
fn preprocessing_equals_transformers_clip_image_processor() {
    use sha2::Digest;
    let reference = reference();
    let stride = reference["stride"].as_u64().unwrap() as usize;
    let mut failures = Vec::new();
    for (name, r) in reference["photos"].as_object().unwrap() {
        let (crop, values) = pipeline_input(name);
        // Every pixel of the 224×224 crop, in the reference's CHW byte order.
        let mut chw = vec![0u8; 3 * 224 * 224];
        for (x, y, p) in crop.enumerate_pixels() {
            for c in 0..3 {
                chw[c * 224 * 224 + y as usize * 224 + x as usize] = p[c];
            }
        }
        let sha = format!("{:x}", sha2::Sha256::digest(&chw));
        let sample = r["values"].as_array().unwrap();
        let worst = sample
            .iter()
            .enumerate()
            .map(|(i, v)| (values[i * stride] - v.as_f64().unwrap() as f32).abs())
            .fold(0f32, f32::max);
        if sha != r["crop_sha256"].as_str().unwrap() || worst > 1e-5 {
            failures.push(format!(
                "{name} ({}): crop differs: {}; worst sampled difference {worst}",
                r["mode"],
                sha != r["crop_sha256"].as_str().unwrap()
            ));
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

#[test]
fn tokens_equal_openai_clip_bpe_tokenizer() {
    // Our tokenizer.json, built by `models fetch` from open_clip's copy of OpenAI's BPE
    // vocabulary, through the encoding the text tower reads, against open_clip's original
    // Python tokenizer (ftfy + regex + BPE; fixture from scripts/reference/clip_reference.py).
    let tokenizer = tokenizers::Tokenizer::from_file(installed_bpe_tokenizer()).unwrap();
    let reference = reference();
    let captions = reference["captions"].as_array().unwrap();
    assert!(captions.len() >= 5);
    for c in captions {
        let text = c["text"].as_str().unwrap();
        let expected: Vec<u32> = serde_json::from_value(c["ids"].clone()).unwrap();
        let ids = mediasift_models::clip_tokenizer::encode(&tokenizer, text, 77).unwrap();
        assert_eq!(ids, expected, "{text:?}");
    }
}

/// `tokenizer.json` of the `clip-bpe-tokenizer` that `models fetch` installs.
fn installed_bpe_tokenizer() -> std::path::PathBuf {
    let cfg = mediasift_core::RawConfig::default().validate().unwrap();
    let store = mediasift_models::ModelStore::new(cfg.models_dir(), Default::default(), false);
    let model = store
        .resolve(&mediasift_models::catalog::CLIP_TOKENIZER)
        .unwrap_or_else(|e| panic!("{e}\n(the test script runs `mediasift models fetch` first)"));
    model.dir.join("tokenizer.json")
}

#[test]
fn a_checkpoint_without_tokenizer_json_uses_the_installed_clip_bpe_tokenizer() {
    let fallback = installed_bpe_tokenizer();
    let dir = tempfile::tempdir().unwrap();
    let config = serde_json::json!({
        "projection_dim": 8,
        "text_config": {"vocab_size": 49408, "hidden_size": 16, "intermediate_size": 32,
            "num_hidden_layers": 1, "num_attention_heads": 2, "max_position_embeddings": 77},
        "vision_config": {"hidden_size": 16, "intermediate_size": 32, "num_hidden_layers": 1,
            "num_attention_heads": 2, "image_size": 32, "patch_size": 16}
    });
    mediasift_models::clip::write_random_checkpoint_of(dir.path(), &config, &["unused"]).unwrap();
    std::fs::remove_file(dir.path().join("tokenizer.json")).unwrap();
    let resolved = ResolvedModel {
        id: "random-clip".into(),
        dir: dir.path().to_path_buf(),
        source: Source::Config,
        sha256: String::new(),
        size_bytes: 0,
    };
    assert!(Clip::load(&resolved, &Device::Cpu).is_err());
    let clip = Clip::load_with_tokenizer(&resolved, &Device::Cpu, Some(&fallback)).unwrap();
    let t = clip
        .embed_texts(&["a photo of a cat".into(), "a photo of a dog".into()])
        .unwrap();
    assert_eq!(t[0].len(), 8);
    assert_ne!(t[0], t[1]);
}
