//! Pillow's `Image.resize` for 8-bit RGB, bit for bit.
//!
//! The references our image models are checked against (transformers' `CLIPImageProcessor`,
//! torchvision's eval transform on PIL images) resize with Pillow, so matching them to 1e-5
//! means doing what `libImaging/Resample.c` does: a separable convolution whose support grows
//! with the downscale factor (antialiasing), coefficients normalised in f64 and then fixed to
//! 22 fractional bits, a horizontal pass first, and each pass rounded and clipped to u8.

use image::RgbImage;

/// Pillow's resampling filters that our models use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Filter {
    /// `Image.BILINEAR` (triangle, support 1).
    Bilinear,
    /// `Image.BICUBIC` (Keys cubic with a = -0.5, support 2).
    Bicubic,
}

impl Filter {
    fn support(self) -> f64 {
        match self {
            Filter::Bilinear => 1.0,
            Filter::Bicubic => 2.0,
        }
    }

    fn weight(self, x: f64) -> f64 {
        let x = x.abs();
        match self {
            Filter::Bilinear if x < 1.0 => 1.0 - x,
            Filter::Bilinear => 0.0,
            Filter::Bicubic => {
                const A: f64 = -0.5;
                if x < 1.0 {
                    ((A + 2.0) * x - (A + 3.0)) * x * x + 1.0
                } else if x < 2.0 {
                    (((x - 5.0) * x + 8.0) * x - 4.0) * A
                } else {
                    0.0
                }
            }
        }
    }
}

const PRECISION_BITS: u32 = 32 - 8 - 2;

/// One pass's taps: for output `i`, input range `start[i]..start[i] + len[i]` with fixed-point
/// weights `weights[i * ksize..]`.
struct Taps {
    ksize: usize,
    start: Vec<usize>,
    len: Vec<usize>,
    weights: Vec<i32>,
}

impl Taps {
    /// `precompute_coeffs` + `normalize_coeffs_8bpc` for the box `0..in_size`.
    fn new(in_size: usize, out_size: usize, filter: Filter) -> Taps {
        // Pillow computes the box width in f32; exact for any realistic size.
        let scale = f64::from(in_size as f32) / out_size as f64;
        let filterscale = scale.max(1.0);
        let support = filter.support() * filterscale;
        let ksize = support.ceil() as usize * 2 + 1;
        let mut taps = Taps {
            ksize,
            start: Vec::with_capacity(out_size),
            len: Vec::with_capacity(out_size),
            weights: vec![0; out_size * ksize],
        };
        let mut k = vec![0f64; ksize];
        for xx in 0..out_size {
            let center = (xx as f64 + 0.5) * scale;
            let ss = 1.0 / filterscale;
            // C's (int) truncates toward zero, as `as` does.
            let xmin = ((center - support + 0.5) as i64).max(0) as usize;
            let xmax = ((center + support + 0.5) as i64).min(in_size as i64) as usize;
            let n = xmax.saturating_sub(xmin).min(ksize);
            let mut ww = 0.0;
            for (x, kx) in k.iter_mut().enumerate().take(n) {
                let w = filter.weight(((x + xmin) as f64 - center + 0.5) * ss);
                *kx = w;
                ww += w;
            }
            let row = &mut taps.weights[xx * ksize..(xx + 1) * ksize];
            for (fixed, &w) in row.iter_mut().zip(&k[..n]) {
                let w = if ww != 0.0 { w / ww } else { w };
                let v = w * f64::from(1u32 << PRECISION_BITS);
                *fixed = if w < 0.0 {
                    (v - 0.5) as i32
                } else {
                    (v + 0.5) as i32
                };
            }
            taps.start.push(xmin);
            taps.len.push(n);
        }
        taps
    }

    fn row(&self, i: usize) -> &[i32] {
        &self.weights[i * self.ksize..i * self.ksize + self.len[i]]
    }
}

fn clip8(acc: i32) -> u8 {
    (acc >> PRECISION_BITS).clamp(0, 255) as u8
}

/// `img.resize((width, height), filter)` on an RGB image, as Pillow computes it.
pub fn resize(img: &RgbImage, width: u32, height: u32, filter: Filter) -> RgbImage {
    let (iw, ih) = img.dimensions();
    let (iw, ih, ow, oh) = (iw as usize, ih as usize, width as usize, height as usize);
    if ow == iw && oh == ih {
        return img.clone();
    }
    let src = img.as_raw();
    let vert = Taps::new(ih, oh, filter);
    // The horizontal pass only needs the rows the vertical pass reads.
    let (first, last) = if oh == 0 {
        (0, 0)
    } else {
        (vert.start[0], vert.start[oh - 1] + vert.len[oh - 1])
    };
    let (mid, mid_w, mid_first) = if ow != iw {
        let horiz = Taps::new(iw, ow, filter);
        let mut mid = vec![0u8; (last - first) * ow * 3];
        for (y, out_row) in (first..last).zip(mid.chunks_exact_mut(ow * 3)) {
            let in_row = &src[y * iw * 3..(y + 1) * iw * 3];
            for (xx, out) in out_row.chunks_exact_mut(3).enumerate() {
                let mut acc = [1i32 << (PRECISION_BITS - 1); 3];
                let weights = horiz.row(xx);
                let base = horiz.start[xx] * 3;
                let pixels = &in_row[base..base + weights.len() * 3];
                for (p, &w) in pixels.chunks_exact(3).zip(weights) {
                    for c in 0..3 {
                        acc[c] += i32::from(p[c]) * w;
                    }
                }
                for c in 0..3 {
                    out[c] = clip8(acc[c]);
                }
            }
        }
        (std::borrow::Cow::Owned(mid), ow, first)
    } else {
        (std::borrow::Cow::Borrowed(src.as_slice()), iw, 0)
    };
    if oh == ih {
        return RgbImage::from_raw(width, height, mid.into_owned()).expect("sized buffer");
    }
    let stride = mid_w * 3;
    let mut out = vec![0u8; oh * stride];
    // Whole rows at a time (the same integer sums as Pillow's per-pixel loop, in an order that
    // vectorises).
    let mut acc = vec![0i32; stride];
    for (yy, out_row) in out.chunks_exact_mut(stride).enumerate() {
        let start = vert.start[yy] - mid_first;
        acc.fill(1i32 << (PRECISION_BITS - 1));
        for (j, &w) in vert.row(yy).iter().enumerate() {
            let row = &mid[(start + j) * stride..(start + j + 1) * stride];
            for (a, &p) in acc.iter_mut().zip(row) {
                *a += i32::from(p) * w;
            }
        }
        for (o, &a) in out_row.iter_mut().zip(&acc) {
            *o = clip8(a);
        }
    }
    RgbImage::from_raw(width, height, out).expect("sized buffer")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_size_is_a_copy_and_constant_images_stay_constant() {
        let img = RgbImage::from_pixel(50, 30, image::Rgb([10, 200, 255]));
        assert_eq!(resize(&img, 50, 30, Filter::Bicubic), img);
        for (w, h) in [(17, 9), (120, 80), (50, 7)] {
            for f in [Filter::Bilinear, Filter::Bicubic] {
                let out = resize(&img, w, h, f);
                assert_eq!(out.dimensions(), (w, h));
                assert!(out.pixels().all(|p| p.0 == [10, 200, 255]), "{f:?} {w}x{h}");
            }
        }
    }

    #[test]
    fn bicubic_overshoot_is_clipped_not_wrapped() {
        // A hard black/white edge upscaled with a negative-lobe filter overshoots both ends.
        let mut img = RgbImage::new(4, 1);
        img.put_pixel(2, 0, image::Rgb([255; 3]));
        img.put_pixel(3, 0, image::Rgb([255; 3]));
        let out = resize(&img, 16, 1, Filter::Bicubic);
        let row: Vec<u8> = out.pixels().map(|p| p[0]).collect();
        assert_eq!(row[0], 0);
        assert_eq!(row[15], 255);
        assert!(row.windows(2).all(|w| w[0] <= w[1]), "{row:?}");
    }
}
