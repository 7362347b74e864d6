//! OCR of images with Tesseract: always, never, or (default) when the image looks like a page,
//! scan or screenshot: mostly flat light and dark areas rather than a photo's continuous tones.

use std::io::Cursor;

use image::RgbImage;
use mediasift_core::OcrMode;
use mediasift_media::{Decoded, Intake};
use mediasift_models::Tesseract;
use serde_json::json;

use super::{Analyzer, FileContext, Output};

#[derive(Debug, Clone)]
pub struct Ocr {
    engine: Tesseract,
    mode: OcrMode,
}

impl Ocr {
    pub fn new(engine: Tesseract, mode: OcrMode) -> Ocr {
        Ocr { engine, mode }
    }
}

impl Analyzer for Ocr {
    fn name(&self) -> &'static str {
        "ocr"
    }

    fn version(&self) -> &'static str {
        "1"
    }

    fn revision(&self) -> String {
        format!(
            "{}+{}+{}",
            self.version(),
            self.engine.version(),
            self.engine.languages()
        )
    }

    fn analyze(&self, intake: &Intake, _ctx: FileContext<'_>) -> Option<Output> {
        let Decoded::Image(img) = &intake.decoded else {
            return None;
        };
        let run = match self.mode {
            OcrMode::Never => false,
            OcrMode::Always => true,
            OcrMode::Auto => looks_like_document(&img.rgb),
        };
        if !run {
            return None;
        }
        let gray = image::imageops::grayscale(&img.rgb);
        let mut png = Vec::new();
        if let Err(e) = image::DynamicImage::ImageLuma8(gray)
            .write_to(&mut Cursor::new(&mut png), image::ImageFormat::Png)
        {
            return Some(Output::value(json!({ "error": e.to_string() })));
        }
        let engine =
            json!({ "engine": self.engine.version(), "languages": self.engine.languages() });
        Some(Output::value(match self.engine.recognize(&png) {
            Ok(r) => json!({
                "text": r.text,
                "mean_confidence": (r.mean_confidence * 10.0).round() / 10.0,
                "lines": r.lines,
                "words": r.words,
                "model": engine,
            }),
            Err(e) => json!({ "error": e.to_string(), "model": engine }),
        }))
    }
}

/// Pages and screenshots are mostly near-white or near-black pixels with a light background;
/// photos (even dark or high-contrast ones) spread over mid-tones. Pixels are sampled on a grid
/// (not averaged: averaging turns fine print into grey) of about 64k points.
pub fn looks_like_document(rgb: &RgbImage) -> bool {
    let (w, h) = rgb.dimensions();
    let step = ((f64::from(w) * f64::from(h) / 65_536.0).sqrt().floor() as u32).max(1);
    let (mut light, mut dark, mut n) = (0u32, 0u32, 0u32);
    for y in (0..h).step_by(step as usize) {
        for x in (0..w).step_by(step as usize) {
            let [r, g, b] = rgb.get_pixel(x, y).0;
            let luma = (u32::from(r) * 299 + u32::from(g) * 587 + u32::from(b) * 114) / 1000;
            n += 1;
            if luma >= 200 {
                light += 1;
            } else if luma <= 80 {
                dark += 1;
            }
        }
    }
    let (light, dark) = (
        f64::from(light) / f64::from(n.max(1)),
        f64::from(dark) / f64::from(n.max(1)),
    );
    light >= 0.5 && light + dark >= 0.85 && dark >= 0.005
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open(rel: &str) -> RgbImage {
        let dir =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/media");
        image::open(dir.join(rel)).unwrap().into_rgb8()
    }

    #[test]
    fn pages_and_scans_look_like_documents_and_photos_do_not() {
        for page in ["text/ocr_01.png", "text/ocr_02.tif", "text/ocr_03.tif"] {
            assert!(looks_like_document(&open(page)), "{page}");
        }
        for photo in [
            "images/photo_02.jpg",
            "images/photo_03.webp",
            "images/photo_05.png",
            "images/photo_08.tif",
            "images/photo_10.jpg",
            "images/photo_13.jpg",
            "images/photo_15.jpg",
            "images/derived_alpha.png",
        ] {
            assert!(!looks_like_document(&open(photo)), "{photo}");
        }
    }
}
