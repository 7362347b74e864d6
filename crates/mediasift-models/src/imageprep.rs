//! The image preprocessing vision models share: scale the short side, take the centre crop,
//! normalise per channel into CHW floats.

use image::RgbImage;
use image::imageops::FilterType;

/// Resizes so the shorter side is `short_side` (the other rounded, at least `crop`), then takes
/// the centred `crop`×`crop` square.
pub fn resize_center_crop(
    rgb: &RgbImage,
    short_side: u32,
    crop: u32,
    filter: FilterType,
) -> RgbImage {
    let (w, h) = rgb.dimensions();
    let scale = f64::from(short_side) / f64::from(w.min(h).max(1));
    let (nw, nh) = (
        ((f64::from(w) * scale).round() as u32).max(crop),
        ((f64::from(h) * scale).round() as u32).max(crop),
    );
    let resized = image::imageops::resize(rgb, nw, nh, filter);
    let (x, y) = ((nw - crop) / 2, (nh - crop) / 2);
    image::imageops::crop_imm(&resized, x, y, crop, crop).to_image()
}

/// A square RGB image to CHW floats: `(v / 255 - mean[c]) / std[c]`.
pub fn normalize_chw(img: &RgbImage, mean: [f32; 3], std: [f32; 3]) -> Vec<f32> {
    let (w, h) = img.dimensions();
    let plane = w as usize * h as usize;
    let mut out = vec![0f32; 3 * plane];
    for (x, y, p) in img.enumerate_pixels() {
        for c in 0..3 {
            out[c * plane + y as usize * w as usize + x as usize] =
                (f32::from(p[c]) / 255.0 - mean[c]) / std[c];
        }
    }
    out
}
