//! 64-bit DCT perceptual hash, computed as the `imagehash` library's `phash` does: 32×32 luma,
//! 2-D DCT-II, the 8×8 lowest frequencies compared with their median.

use image::imageops::FilterType;
use image::{GrayImage, RgbImage};
use mediasift_media::{Decoded, Intake};
use rustdct::DctPlanner;
use serde_json::json;

use super::{Analyzer, FileContext, Output};

/// Perceptual hash of images and of each sampled video frame.
#[derive(Debug, Clone, Copy, Default)]
pub struct PerceptualHash;

impl Analyzer for PerceptualHash {
    fn name(&self) -> &'static str {
        "phash"
    }

    fn version(&self) -> &'static str {
        "1"
    }

    fn analyze(&self, intake: &Intake, _ctx: FileContext<'_>) -> Option<Output> {
        match &intake.decoded {
            Decoded::Image(img) => {
                let hash = phash64(&img.rgb);
                Some(Output {
                    value: json!({ "algorithm": "dct64", "hash": format!("{hash:016x}") }),
                    phash: Some(hash),
                    blobs: Vec::new(),
                    also: Vec::new(),
                })
            }
            Decoded::Video(v) => {
                let frames: Vec<_> = v
                    .frames
                    .iter()
                    .map(|f| json!({ "time_secs": f.time_secs, "hash": format!("{:016x}", phash64(&f.rgb)) }))
                    .collect();
                Some(Output::value(
                    json!({ "algorithm": "dct64", "frames": frames }),
                ))
            }
            Decoded::Audio(_) | Decoded::Text(_) => None,
        }
    }
}

const SIDE: usize = 32;
const LOW: usize = 8;
const PREFILTER: u32 = 128;

/// The 64-bit DCT pHash of an image.
pub fn phash64(rgb: &RgbImage) -> u64 {
    // A cheap area reduction first keeps large scans fast; Lanczos then gives the 32x32 input.
    let reduced;
    let src = if rgb.width() > PREFILTER || rgb.height() > PREFILTER {
        reduced = image::imageops::thumbnail(
            rgb,
            PREFILTER.min(rgb.width()),
            PREFILTER.min(rgb.height()),
        );
        &reduced
    } else {
        rgb
    };
    let gray: GrayImage = image::imageops::grayscale(src);
    let small = image::imageops::resize(&gray, SIDE as u32, SIDE as u32, FilterType::Lanczos3);
    let mut m: Vec<f32> = small.pixels().map(|p| f32::from(p[0])).collect();
    let dct = DctPlanner::new().plan_dct2(SIDE);
    for row in m.chunks_exact_mut(SIDE) {
        dct.process_dct2(row);
    }
    let mut col = [0f32; SIDE];
    for x in 0..SIDE {
        for y in 0..SIDE {
            col[y] = m[y * SIDE + x];
        }
        dct.process_dct2(&mut col);
        for y in 0..SIDE {
            m[y * SIDE + x] = col[y];
        }
    }
    let low: Vec<f32> = (0..LOW)
        .flat_map(|y| (0..LOW).map(move |x| (y, x)))
        .map(|(y, x)| m[y * SIDE + x])
        .collect();
    let mut sorted = low.clone();
    sorted.sort_by(f32::total_cmp);
    let median = (sorted[31] + sorted[32]) / 2.0;
    low.iter().enumerate().fold(
        0u64,
        |h, (i, v)| if *v > median { h | (1 << (63 - i)) } else { h },
    )
}

/// Number of differing bits.
pub fn hamming(a: u64, b: u64) -> u32 {
    (a ^ b).count_ones()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn photo(name: &str) -> RgbImage {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../tests/fixtures/media/images");
        image::open(dir.join(name)).unwrap().into_rgb8()
    }

    #[test]
    fn resized_and_recompressed_copies_are_near_and_other_photos_are_far() {
        let cat = photo("photo_02.jpg");
        let small = image::imageops::resize(&cat, 200, 133, FilterType::Triangle);
        let mut jpeg = Vec::new();
        image::codecs::jpeg::JpegEncoder::new_with_quality(&mut jpeg, 40)
            .encode_image(&cat)
            .unwrap();
        let recompressed = image::load_from_memory(&jpeg).unwrap().into_rgb8();
        let h = phash64(&cat);
        assert!(
            hamming(h, phash64(&small)) <= 4,
            "resized: {}",
            hamming(h, phash64(&small))
        );
        assert!(
            hamming(h, phash64(&recompressed)) <= 4,
            "recompressed: {}",
            hamming(h, phash64(&recompressed))
        );
        for other in ["photo_03.webp", "photo_05.png", "photo_14.jpg"] {
            let d = hamming(h, phash64(&photo(other)));
            assert!(d > 16, "{other} is only {d} bits away");
        }
    }
}
