//! f32 NCHW convolution kernels for the CPU, on plain slices.
//!
//! - dense (groups = 1): per image, im2col into `[cin·k·k, ho·wo]` (skipped for 1×1 stride 1,
//!   where the image already is that matrix), then one product `W[cout, cin·k·k] · cols`
//!   accumulated onto the NCHW output filled with the bias (so BLAS neither zeroes it first nor
//!   is it read again for the bias), then the activation, if any, in one pass. The product
//!   goes through `gemm` (OpenBLAS under the `openblas` feature, see crates/gemm-blas).
//! - depthwise (groups = channels, one input channel per output): per plane, k² shifted
//!   multiply-adds over output rows (contiguous for stride 1, so they vectorise), bias first and
//!   the activation at the end.
//!
//! Images (dense) or planes (depthwise) run in parallel on the rayon pool; a batch smaller than
//! the pool splits each product instead.

use gemm::Parallelism;

use crate::slice_gemm::product;
use rayon::prelude::*;

/// What follows the convolution, applied in the same pass as the bias.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activation {
    None,
    Relu,
    /// `min(max(x, 0), 6)` (MobileNetV2).
    Relu6,
}

impl Activation {
    fn apply(self, v: f32) -> f32 {
        match self {
            Activation::None => v,
            Activation::Relu => v.max(0.0),
            Activation::Relu6 => v.clamp(0.0, 6.0),
        }
    }
}

/// Sizes of one convolution: input `n × c × h × w`, square kernel `k`, output `ho × wo`.
#[derive(Debug, Clone, Copy)]
pub struct Geometry {
    pub n: usize,
    pub c: usize,
    pub h: usize,
    pub w: usize,
    pub cout: usize,
    pub k: usize,
    pub stride: usize,
    pub pad: usize,
}

impl Geometry {
    pub fn out_len(&self, len: usize) -> usize {
        (len + 2 * self.pad - self.k) / self.stride + 1
    }

    pub fn ho(&self) -> usize {
        self.out_len(self.h)
    }

    pub fn wo(&self) -> usize {
        self.out_len(self.w)
    }

    /// Output columns `ox` whose input column `ox·stride + kx − pad` lies inside the image.
    fn valid_cols(&self, kx: usize) -> (usize, usize) {
        let (s, p) = (self.stride, self.pad);
        let lo = if kx >= p { 0 } else { (p - kx).div_ceil(s) };
        let hi = if self.w + p > kx {
            (self.w + p - kx).div_ceil(s).min(self.wo())
        } else {
            0
        };
        (lo, hi.max(lo))
    }

    /// Input row of output row `oy` under kernel row `ky`, if inside the image.
    fn input_row(&self, oy: usize, ky: usize) -> Option<usize> {
        let iy = (oy * self.stride + ky).checked_sub(self.pad)?;
        (iy < self.h).then_some(iy)
    }
}

/// `out[m, n] += a[m, k] · b[k, n]`, all row-major and contiguous.
fn matmul_add(
    out: &mut [f32],
    a: &[f32],
    b: &[f32],
    (m, n, k): (usize, usize, usize),
    par: Parallelism,
) {
    assert!(out.len() == m * n && a.len() == m * k && b.len() == k * n);
    product(out, n, true, (a, k, 1), (b, n, 1), (m, n, k), 1.0, par);
}

/// One image `c × h × w` laid out as `[c·k·k, ho·wo]`: row `(ci, ky, kx)` holds the input pixel
/// each output position sees through that kernel tap (0 in the padding).
fn im2col(x: &[f32], g: &Geometry) -> Vec<f32> {
    let (ho, wo, k) = (g.ho(), g.wo(), g.k);
    let plane = ho * wo;
    let mut cols = vec![0f32; g.c * k * k * plane];
    cols.par_chunks_mut(plane)
        .with_min_len((4096 / plane).max(1))
        .enumerate()
        .for_each(|(r, row)| {
            let (ci, ky, kx) = (r / (k * k), (r / k) % k, r % k);
            let src = &x[ci * g.h * g.w..][..g.h * g.w];
            let (lo, hi) = g.valid_cols(kx);
            for oy in 0..ho {
                let Some(iy) = g.input_row(oy, ky) else {
                    continue;
                };
                let line = &src[iy * g.w..][..g.w];
                let dst = &mut row[oy * wo..][..wo];
                for ox in lo..hi {
                    dst[ox] = line[ox * g.stride + kx - g.pad];
                }
            }
        });
    cols
}

/// Dense convolution: `x` NCHW, `weight` `(cout, c, k, k)`, `bias` `(cout)`; NCHW output.
pub fn dense(x: &[f32], weight: &[f32], bias: &[f32], g: &Geometry, act: Activation) -> Vec<f32> {
    let plane = g.ho() * g.wo();
    let depth = g.c * g.k * g.k;
    let direct = g.k == 1 && g.stride == 1 && g.pad == 0;
    // Enough images to fill the pool: one single-threaded product each. Otherwise each product
    // is split over the pool.
    let inner = if g.n >= rayon::current_num_threads() {
        Parallelism::None
    } else {
        Parallelism::Rayon(0)
    };
    let mut out = vec![0f32; g.n * g.cout * plane];
    out.par_chunks_mut(g.cout * plane)
        .zip(x.par_chunks(g.c * g.h * g.w))
        .for_each(|(o, image)| {
            let unfolded;
            let cols = if direct {
                image
            } else {
                unfolded = im2col(image, g);
                &unfolded
            };
            for (row, &b) in o.chunks_mut(plane).zip(bias) {
                row.fill(b);
            }
            matmul_add(o, weight, cols, (g.cout, plane, depth), inner);
            if act != Activation::None {
                for v in o.iter_mut() {
                    *v = act.apply(*v);
                }
            }
        });
    out
}

/// Depthwise convolution: `x` NCHW, `weight` `(c, 1, k, k)`, `bias` `(c)`; NCHW output.
pub fn depthwise(
    x: &[f32],
    weight: &[f32],
    bias: &[f32],
    g: &Geometry,
    act: Activation,
) -> Vec<f32> {
    let (ho, wo, k) = (g.ho(), g.wo(), g.k);
    let plane = ho * wo;
    let mut out = vec![0f32; g.n * g.c * plane];
    out.par_chunks_mut(plane)
        .with_min_len((16384 / plane).max(1))
        .enumerate()
        .for_each(|(p, o)| {
            let ch = p % g.c;
            let src = &x[p * g.h * g.w..][..g.h * g.w];
            let taps = &weight[ch * k * k..][..k * k];
            o.fill(bias[ch]);
            for ky in 0..k {
                for kx in 0..k {
                    let t = taps[ky * k + kx];
                    let (lo, hi) = g.valid_cols(kx);
                    if lo >= hi {
                        continue;
                    }
                    for oy in 0..ho {
                        let Some(iy) = g.input_row(oy, ky) else {
                            continue;
                        };
                        let line = &src[iy * g.w..][..g.w];
                        let dst = &mut o[oy * wo..][..wo];
                        if g.stride == 1 {
                            let first = lo + kx - g.pad;
                            for (d, s) in dst[lo..hi].iter_mut().zip(&line[first..]) {
                                *d += t * s;
                            }
                        } else {
                            for (ox, d) in dst.iter_mut().enumerate().take(hi).skip(lo) {
                                *d += t * line[ox * g.stride + kx - g.pad];
                            }
                        }
                    }
                }
            }
            if act != Activation::None {
                for v in o.iter_mut() {
                    *v = act.apply(*v);
                }
            }
        });
    out
}
