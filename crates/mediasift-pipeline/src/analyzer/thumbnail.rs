//! A small JPEG preview of images and of a video's first sampled frame, stored as a blob under
//! `thumbnails/<content-hash>.jpg` for search results and moderation queues.

use image::RgbImage;
use image::codecs::jpeg::JpegEncoder;
use mediasift_media::{Decoded, Intake};
use serde_json::json;

use super::{Analyzer, FileContext, Output};

#[derive(Debug, Clone, Copy)]
pub struct Thumbnail {
    max_side: u32,
}

impl Thumbnail {
    pub fn new(max_side: u32) -> Thumbnail {
        Thumbnail { max_side }
    }

    fn encode(&self, rgb: &RgbImage) -> Option<(Vec<u8>, u32, u32)> {
        let (w, h) = rgb.dimensions();
        let scale = f64::from(self.max_side) / f64::from(w.max(h));
        let small;
        let img = if scale < 1.0 {
            let tw = ((f64::from(w) * scale).round() as u32).max(1);
            let th = ((f64::from(h) * scale).round() as u32).max(1);
            small = image::imageops::thumbnail(rgb, tw, th);
            &small
        } else {
            rgb
        };
        let mut out = Vec::new();
        JpegEncoder::new_with_quality(&mut out, 85)
            .encode_image(img)
            .ok()?;
        Some((out, img.width(), img.height()))
    }
}

impl Analyzer for Thumbnail {
    fn name(&self) -> &'static str {
        "thumbnail"
    }

    fn version(&self) -> &'static str {
        "1"
    }

    fn analyze(&self, intake: &Intake, ctx: FileContext<'_>) -> Option<Output> {
        let rgb = match &intake.decoded {
            Decoded::Image(i) => &i.rgb,
            Decoded::Video(v) => &v.frames.first()?.rgb,
            Decoded::Audio(_) | Decoded::Text(_) => return None,
        };
        let (bytes, width, height) = self.encode(rgb)?;
        let key = format!("thumbnails/{}.jpg", ctx.content_hash);
        Some(Output {
            value: json!({ "key": key, "width": width, "height": height, "bytes": bytes.len() }),
            phash: None,
            blobs: vec![(key, bytes)],
            also: Vec::new(),
        })
    }
}
