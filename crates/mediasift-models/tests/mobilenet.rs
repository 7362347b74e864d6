//! MobileNetV2 on the real torchvision weights (converted by `mediasift models fetch` from the
//! legacy .pth) against an independent float64 numpy forward pass with unfolded batch norms
//! (scripts/reference/mobilenet_reference.py → fixtures).
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use std::collections::BTreeMap;
use std::path::PathBuf;

use candle_core::Device;
use mediasift_core::RawConfig;
use mediasift_models::mobilenet::{center_crop, normalise, preprocess, top_k};
use mediasift_models::{MobileNetV2, ModelStore, catalog};
use serde::Deserialize;

#[derive(Deserialize)]
struct Reference {
    crop: String,
    logits: Vec<f32>,
}

fn reference() -> BTreeMap<String, Reference> {
    serde_json::from_str(include_str!("fixtures/mobilenet_reference.json")).unwrap()
}

fn fixture(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(rel)
}

fn resolved() -> mediasift_models::ResolvedModel {
    let cfg = RawConfig::default().validate().unwrap();
    let store = ModelStore::new(cfg.models_dir(), Default::default(), false);
    store
        .resolve(&catalog::MOBILENET_V2)
        .unwrap_or_else(|e| panic!("{e}\n(the test script runs `mediasift models fetch` first)"))
}

fn model() -> MobileNetV2 {
    MobileNetV2::load(&resolved(), &Device::Cpu).unwrap()
}

fn reference_inputs() -> Vec<Vec<f32>> {
    reference()
        .values()
        .map(|r| {
            normalise(
                &image::open(fixture("tests/fixtures").join(&r.crop))
                    .unwrap()
                    .into_rgb8(),
            )
        })
        .collect()
}

/// The photo as the pipeline decodes it (libjpeg-turbo for JPEG, as Pillow).
fn photo(name: &str) -> image::RgbImage {
    let cfg = RawConfig::default().validate().unwrap();
    let tools = mediasift_media::Tools::detect(cfg.video());
    let path = fixture("../../tests/fixtures/media/images").join(name);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    match mediasift_media::decode_file(&path, &cfg, &tools, deadline)
        .unwrap()
        .decoded
    {
        mediasift_media::Decoded::Image(img) => img.rgb,
        _ => panic!("{name} is not an image"),
    }
}

#[test]
fn logits_match_the_reference_forward_pass() {
    let net = model();
    let refs = reference();
    let inputs = reference_inputs();
    let batch = net.forward(&inputs).unwrap();
    for ((name, r), out) in refs.iter().zip(&batch) {
        let d = out
            .logits
            .iter()
            .zip(&r.logits)
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        assert!(d < 1e-4, "{name}: max logit deviation {d}");
        assert_eq!(out.feature.len(), 1280);
    }
    // A batch equals single calls.
    for (input, out) in inputs.iter().zip(&batch) {
        let single = net.forward(std::slice::from_ref(input)).unwrap().remove(0);
        let d = single
            .logits
            .iter()
            .zip(&out.logits)
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        assert!(d < 1e-5, "batch vs single {d}");
    }
}

/// The candle graph other devices run (NCHW, candle's conv2d) computes what our CPU engine
/// (NHWC) does.
#[test]
fn candle_ops_give_the_cpu_engines_answers() {
    let inputs = reference_inputs();
    let ours = model().forward(&inputs).unwrap();
    let theirs = MobileNetV2::load_candle_ops(&resolved(), &Device::Cpu)
        .unwrap()
        .forward(&inputs)
        .unwrap();
    for (a, b) in ours.iter().zip(&theirs) {
        let d = a
            .logits
            .iter()
            .chain(&a.feature)
            .zip(b.logits.iter().chain(&b.feature))
            .map(|(x, y)| (x - y).abs())
            .fold(0f32, f32::max);
        assert!(d < 1e-4, "max deviation {d}");
    }
}

#[test]
fn photos_get_the_tags_a_person_would_give() {
    let net = model();
    let tags = |name: &str| -> Vec<String> {
        let out = net.forward(&[preprocess(&photo(name))]).unwrap().remove(0);
        top_k(&out.logits, 5)
            .into_iter()
            .map(|(i, _)| net.class_name(i).to_string())
            .collect()
    };
    let cat = tags("photo_02.jpg");
    assert!(
        cat.iter()
            .any(|t| ["Egyptian cat", "tabby", "tiger cat"].contains(&t.as_str())),
        "{cat:?}"
    );
    let coffee = tags("photo_03.webp");
    assert!(
        coffee.iter().any(|t| t == "espresso" || t == "cup"),
        "{coffee:?}"
    );
    assert_eq!(coffee[0], "espresso", "{coffee:?}");
}

#[test]
fn preprocessing_equals_the_references_pillow_crop() {
    // Same decoder as Pillow (libjpeg-turbo) and Pillow's bilinear resampling, ported: every
    // pixel of the 224×224 crop is equal.
    for (name, r) in reference() {
        let ours = center_crop(&photo(&name));
        let theirs = image::open(fixture("tests/fixtures").join(&r.crop))
            .unwrap()
            .into_rgb8();
        let differing = ours
            .as_raw()
            .iter()
            .zip(theirs.as_raw())
            .filter(|(a, b)| a != b)
            .count();
        assert_eq!(differing, 0, "{name}: {differing} of 150528 values differ");
    }
}
