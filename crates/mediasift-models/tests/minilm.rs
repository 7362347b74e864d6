//! MiniLM on the real weights (installed by `mediasift models fetch`) against an independent
//! float64 numpy implementation (scripts/reference/minilm_reference.py → fixtures).
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use candle_core::Device;
use mediasift_core::RawConfig;
use mediasift_models::{Chunking, ModelStore, TextEmbedder, catalog};
use serde::Deserialize;

#[derive(Deserialize)]
struct Reference {
    sentences: Vec<Sentence>,
}

#[derive(Deserialize)]
struct Sentence {
    text: String,
    ids: Vec<u32>,
    vector: Vec<f32>,
}

fn reference() -> Reference {
    serde_json::from_str(include_str!("fixtures/minilm_reference.json")).unwrap()
}

fn embedder() -> TextEmbedder {
    let cfg = RawConfig::default().validate().unwrap();
    let store = ModelStore::new(cfg.models_dir(), Default::default(), false);
    let model = store
        .resolve(&catalog::MINILM)
        .unwrap_or_else(|e| panic!("{e}\n(the test script runs `mediasift models fetch` first)"));
    TextEmbedder::load(&model, &Device::Cpu, Chunking::default()).unwrap()
}

fn cos(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

#[test]
fn published_similarity_and_reference_vectors_are_reproduced() {
    let e = embedder();
    let r = reference();
    let texts: Vec<&str> = r.sentences.iter().map(|s| s.text.as_str()).collect();
    let vectors = e.embed_sentences(&texts).unwrap();
    // The sentence-transformers documentation's example pair.
    let c = cos(&vectors[0], &vectors[1]);
    assert!((c - 0.755).abs() <= 0.002, "cosine {c}");
    for (s, v) in r.sentences.iter().zip(&vectors) {
        assert_eq!(v.len(), 384);
        let windows = e.chunk(&s.text).unwrap();
        let ids = windows.first().cloned().unwrap_or_default();
        if !s.text.is_empty() {
            assert_eq!(ids, s.ids, "token ids of {:?}", s.text);
        }
        let max_diff = v
            .iter()
            .zip(&s.vector)
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        assert!(max_diff < 1e-4, "{:?}: max deviation {max_diff}", s.text);
    }
}

#[test]
fn a_padded_batch_equals_single_calls() {
    let e = embedder();
    let r = reference();
    let texts: Vec<&str> = r.sentences.iter().map(|s| s.text.as_str()).collect();
    let batch = e.embed_sentences(&texts).unwrap();
    for (t, b) in texts.iter().zip(&batch) {
        let single = e.embed_sentences(&[t]).unwrap().remove(0);
        let d = single
            .iter()
            .zip(b)
            .map(|(x, y)| (x - y).abs())
            .fold(0f32, f32::max);
        assert!(d < 1e-5, "{t:?}: batch vs single {d}");
    }
}

#[test]
fn long_text_is_cut_into_overlapping_windows_and_pooled() {
    let e = embedder();
    let text = "The quick brown fox jumps over the lazy dog. ".repeat(120);
    let doc = e.embed_document(&text, 8).unwrap();
    let windows = e.chunk(&text).unwrap();
    assert!(windows.len() >= 5, "{} windows", windows.len());
    assert!(windows.iter().all(|w| w.len() <= 256));
    // Consecutive windows share `overlap` tokens.
    assert_eq!(windows[0][1 + 222..1 + 254], windows[1][1..1 + 32]);
    assert_eq!(doc.chunks.len(), windows.len());
    let norm: f32 = doc.pooled.iter().map(|x| x * x).sum::<f32>().sqrt();
    assert!((norm - 1.0).abs() < 1e-5);
    // Repetitive text: every window, and the document, mean the same thing.
    let sims: Vec<f32> = doc.chunks.iter().map(|c| cos(c, &doc.pooled)).collect();
    assert!(sims.iter().all(|&s| s > 0.9), "{sims:?}");
}
