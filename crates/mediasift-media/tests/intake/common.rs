use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use image::RgbImage;
use mediasift_core::{Config, MediaError, RawConfig};
use mediasift_media::{Decoded, DecodedAudio, DecodedImage, Intake, Tools, decode_file};

pub fn fixture(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures/media")
        .join(rel)
}

pub fn config() -> &'static Config {
    static CFG: OnceLock<Config> = OnceLock::new();
    CFG.get_or_init(|| {
        RawConfig::default()
            .validate()
            .expect("default config is valid")
    })
}

pub fn tools() -> &'static Tools {
    static TOOLS: OnceLock<Tools> = OnceLock::new();
    TOOLS.get_or_init(|| {
        let t = Tools::detect(config().video());
        assert!(
            t.ffmpeg.is_some() && t.ffprobe.is_some(),
            "these tests need ffmpeg and ffprobe (the test script installs them)"
        );
        t
    })
}

pub fn decode(rel: &str) -> Result<Intake, MediaError> {
    decode_file(
        &fixture(rel),
        config(),
        tools(),
        Instant::now() + Duration::from_secs(120),
    )
}

pub fn image(rel: &str) -> DecodedImage {
    match decode(rel).unwrap_or_else(|e| panic!("{rel}: {e}")).decoded {
        Decoded::Image(i) => i,
        other => panic!("{rel} decoded as {:?}", other.kind()),
    }
}

pub fn audio(rel: &str) -> DecodedAudio {
    match decode(rel).unwrap_or_else(|e| panic!("{rel}: {e}")).decoded {
        Decoded::Audio(a) => a,
        other => panic!("{rel} decoded as {:?}", other.kind()),
    }
}

/// Mean absolute difference per channel value of two equally sized images.
pub fn mean_abs_diff(a: &RgbImage, b: &RgbImage) -> f64 {
    assert_eq!(a.dimensions(), b.dimensions());
    let sum: u64 = a
        .as_raw()
        .iter()
        .zip(b.as_raw())
        .map(|(x, y)| u64::from(x.abs_diff(*y)))
        .sum();
    sum as f64 / a.as_raw().len() as f64
}

/// Pearson correlation of two signals over their common length.
pub fn correlation(a: &[f32], b: &[f32]) -> f64 {
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    let mean = |x: &[f32]| x.iter().map(|&v| f64::from(v)).sum::<f64>() / n as f64;
    let (ma, mb) = (mean(a), mean(b));
    let (mut cov, mut va, mut vb) = (0.0, 0.0, 0.0);
    for (x, y) in a.iter().zip(b) {
        let (dx, dy) = (f64::from(*x) - ma, f64::from(*y) - mb);
        cov += dx * dy;
        va += dx * dx;
        vb += dy * dy;
    }
    cov / (va.sqrt() * vb.sqrt()).max(1e-12)
}
