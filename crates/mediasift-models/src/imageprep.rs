//! The image preprocessing vision models share: scale the short side, take the centre crop,
//! normalise per channel into CHW floats. Resizing is Pillow's, bit for bit (see `pillow`), so
//! a crop equals the one the model's Python reference feeds it.

use image::RgbImage;

pub use crate::pillow::Filter;

/// How the long side's length follows from scaling the short side.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LongSide {
    /// `int(short_side * long / short)`: transformers' and torchvision's rule.
    Truncate,
    /// `round(long * (short_side / short))`, ties to even as Python's `round`.
    Round,
}

/// Resizes so the shorter side is `short_side` (the other per `long`, at least `crop`), then
/// takes the centred `crop`×`crop` square (offsets rounded down).
pub fn resize_center_crop(
    rgb: &RgbImage,
    short_side: u32,
    crop: u32,
    filter: Filter,
    long: LongSide,
) -> RgbImage {
    let (w, h) = rgb.dimensions();
    let short = w.min(h).max(1);
    let scaled = |side: u32| -> u32 {
        if side == short {
            return short_side;
        }
        let v = match long {
            LongSide::Truncate => {
                (f64::from(short_side) * f64::from(side) / f64::from(short)).floor()
            }
            LongSide::Round => {
                (f64::from(side) * (f64::from(short_side) / f64::from(short))).round_ties_even()
            }
        };
        v as u32
    };
    let (nw, nh) = (scaled(w).max(crop), scaled(h).max(crop));
    let resized = crate::pillow::resize(rgb, nw, nh, filter);
    let (x, y) = ((nw - crop) / 2, (nh - crop) / 2);
    image::imageops::crop_imm(&resized, x, y, crop, crop).to_image()
}

/// A square RGB image to CHW floats: `(v / 255 - mean[c]) / std[c]` in f32, as numpy does it
/// in transformers' `rescale` + `normalize`.
pub fn normalize_chw(img: &RgbImage, mean: [f32; 3], std: [f32; 3]) -> Vec<f32> {
    let (w, h) = img.dimensions();
    let plane = w as usize * h as usize;
    let mut out = vec![0f32; 3 * plane];
    for (x, y, p) in img.enumerate_pixels() {
        for c in 0..3 {
            let v = (f64::from(p[c]) * (1.0 / 255.0)) as f32;
            out[c * plane + y as usize * w as usize + x as usize] = (v - mean[c]) / std[c];
        }
    }
    out
}
