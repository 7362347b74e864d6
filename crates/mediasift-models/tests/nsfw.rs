//! open_nsfw on the real weights (converted by `mediasift models fetch` from the ONNX export)
//! against PyPI onnxruntime running that ONNX file (scripts/reference/nsfw_reference.py).
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use std::collections::BTreeMap;
use std::path::PathBuf;

use candle_core::Device;
use mediasift_core::RawConfig;
use mediasift_models::nsfw::{normalise, preprocess};
use mediasift_models::{ModelStore, OpenNsfw, catalog};
use serde::Deserialize;

#[derive(Deserialize)]
struct Reference {
    input: String,
    nsfw: f32,
}

fn reference() -> BTreeMap<String, Reference> {
    serde_json::from_str(include_str!("fixtures/nsfw_reference.json")).unwrap()
}

fn fixture(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(rel)
}

fn resolved() -> mediasift_models::ResolvedModel {
    let cfg = RawConfig::default().validate().unwrap();
    let store = ModelStore::new(cfg.models_dir(), Default::default(), false);
    store
        .resolve(&catalog::OPEN_NSFW)
        .unwrap_or_else(|e| panic!("{e}\n(the test script runs `mediasift models fetch` first)"))
}

fn model() -> OpenNsfw {
    OpenNsfw::load(&resolved(), &Device::Cpu).unwrap()
}

fn reference_inputs() -> Vec<Vec<f32>> {
    reference()
        .values()
        .map(|r| {
            normalise(
                &image::open(fixture("tests/fixtures").join(&r.input))
                    .unwrap()
                    .into_rgb8(),
            )
        })
        .collect()
}

fn log_odds(p: f32) -> f32 {
    (p / (1.0 - p)).ln()
}

#[test]
fn scores_match_onnxruntime_on_the_same_inputs() {
    let net = model();
    let refs = reference();
    let inputs = reference_inputs();
    let scores = net.scores(&inputs).unwrap();
    for ((name, r), score) in refs.iter().zip(&scores) {
        assert!(
            (score - r.nsfw).abs() < 1e-3,
            "{name}: {score} vs onnxruntime {}",
            r.nsfw
        );
        // Far more sensitive for these clearly safe photos: the log-odds agree too.
        let d = (log_odds(*score) - log_odds(r.nsfw)).abs();
        assert!(
            d < 0.01,
            "{name}: log-odds differ by {d} ({score} vs {})",
            r.nsfw
        );
    }
    let single = net.scores(&inputs[..1]).unwrap()[0];
    assert!((single - scores[0]).abs() < 1e-6, "batch vs single");
}

/// The candle graph other devices run (NCHW, candle's conv2d) computes what our CPU engine
/// (NHWC) does; compared as log-odds, which these clearly safe photos make sensitive.
#[test]
fn candle_ops_give_the_cpu_engines_answers() {
    let inputs = reference_inputs();
    let ours = model().scores(&inputs).unwrap();
    let theirs = OpenNsfw::load_candle_ops(&resolved(), &Device::Cpu)
        .unwrap()
        .scores(&inputs)
        .unwrap();
    for (a, b) in ours.iter().zip(&theirs) {
        let d = (log_odds(*a) - log_odds(*b)).abs();
        assert!(d < 1e-3, "{a} vs {b}: log-odds differ by {d}");
    }
}

#[test]
fn inputs_of_the_wrong_size_are_an_error_not_a_panic() {
    let err = model().scores(&[vec![0.0; 10]]).unwrap_err().to_string();
    assert!(err.contains("input 0 has 10 values"), "{err}");
}

#[test]
fn our_preprocessing_gives_the_reference_score_on_safe_photos() {
    let net = model();
    for (name, r) in reference() {
        let rgb = image::open(fixture("../../tests/fixtures/media/images").join(&name))
            .unwrap()
            .into_rgb8();
        let score = net.scores(&[preprocess(&rgb)]).unwrap()[0];
        eprintln!(
            "{name}: ours {score:.5} vs reference pipeline {:.5}",
            r.nsfw
        );
        // Different resizer and JPEG encoder than Pillow's: close, not bit-identical.
        assert!(
            (score - r.nsfw).abs() < 0.01,
            "{name}: {score} vs {}",
            r.nsfw
        );
        assert!(score < 0.05, "{name} is safe for work: {score}");
    }
}
