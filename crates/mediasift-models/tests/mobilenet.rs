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

fn model() -> MobileNetV2 {
    let cfg = RawConfig::default().validate().unwrap();
    let store = ModelStore::new(cfg.models_dir(), Default::default(), false);
    let m = store
        .resolve(&catalog::MOBILENET_V2)
        .unwrap_or_else(|e| panic!("{e}\n(the test script runs `mediasift models fetch` first)"));
    MobileNetV2::load(&m, &Device::Cpu).unwrap()
}

fn photo(name: &str) -> image::RgbImage {
    image::open(fixture("../../tests/fixtures/media/images").join(name))
        .unwrap()
        .into_rgb8()
}

#[test]
fn logits_match_the_reference_forward_pass() {
    let net = model();
    let refs = reference();
    let inputs: Vec<Vec<f32>> = refs
        .values()
        .map(|r| {
            normalise(
                &image::open(fixture("tests/fixtures").join(&r.crop))
                    .unwrap()
                    .into_rgb8(),
            )
        })
        .collect();
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
fn preprocessing_matches_torchvision_within_resampling_noise() {
    for (name, r) in reference() {
        let ours = center_crop(&photo(&name));
        let theirs = image::open(fixture("tests/fixtures").join(&r.crop))
            .unwrap()
            .into_rgb8();
        let d: f64 = ours
            .as_raw()
            .iter()
            .zip(theirs.as_raw())
            .map(|(a, b)| f64::from(a.abs_diff(*b)))
            .sum::<f64>()
            / ours.as_raw().len() as f64;
        eprintln!("{name}: mean |ours - Pillow| = {d:.2} levels");
        assert!(d < 0.5, "{name}: crops differ by {d} levels on average");
    }
}
