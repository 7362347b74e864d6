//! A vectorisable `exp` and `erf`, and the softmax, GELU, log-sum-exp, dot product and axpy
//! built to vectorise (8 lanes, FMA where the target has it).
//!
//! candle's CPU softmax calls the scalar `expf` of the C library once per element. Whisper's
//! encoder alone takes 108 M exponentials per 30 s window (8 heads × 1500² scores × 6 layers),
//! which was 5–8 % of transcription time here. This `exp` is Cephes' polynomial, written
//! without branches so that the compiler turns a loop over a slice into 8-lane AVX2 code. The
//! sums run in 8 lanes because a strictly ordered scalar sum waits one add's latency per element:
//! in Whisper's decoder steps the self-attention scores summed that way were 7 % of beam-5 time,
//! and a scalar f64 log-sum-exp over the logits another 4 %.

use candle_core::{DType, Tensor};
use rayon::prelude::*;

/// Inputs at or below this give exactly 0 (so `-inf` masks stay exact zeros).
const EXP_LOW: f32 = -87.336_55;
/// Inputs above this saturate to `+inf` (e^88.37 is within 30 % of `f32::MAX`).
const EXP_HIGH: f32 = 88.376_26;

/// e^x to within 2 ulp for x in [-87.3, 88.3]; 0 below, +inf above.
#[inline(always)]
pub fn exp(x: f32) -> f32 {
    let xc = x.clamp(EXP_LOW, EXP_HIGH);
    // x = n·ln2 + r, |r| ≤ ln2/2, with ln2 split in two for an exact n·ln2. Adding 1.5·2^23
    // rounds to an integer and leaves it in the low mantissa bits: no float-to-int conversion
    // (whose saturating semantics would keep the loop scalar).
    const ROUND: f32 = 12_582_912.0;
    let k = xc * std::f32::consts::LOG2_E + ROUND;
    let n = k - ROUND;
    let r = xc - n * 0.693_359_4 - n * -2.121_944_4e-4;
    let p = ((((1.987_569_1e-4 * r + 1.398_199_9e-3) * r + 8.333_452e-3) * r + 4.166_579_6e-2) * r
        + 0.166_666_65)
        * r
        + 0.5;
    let y = p * r * r + r + 1.0;
    // 2^n from the exponent bits; n is in [-126, 127] after the clamp.
    let scale = f32::from_bits(k.to_bits().wrapping_sub(ROUND.to_bits() - 127) << 23);
    let v = y * scale;
    if x <= EXP_LOW {
        0.0
    } else if x > EXP_HIGH {
        f32::INFINITY
    } else {
        v
    }
}

/// erf(x) as a rational function of x (Eigen's single-precision fit: within 1e-6 of erf, and
/// ±1 to that precision beyond |x| = 4), without branches so loops over slices vectorise.
#[inline(always)]
pub fn erf(x: f32) -> f32 {
    let x = x.clamp(-4.0, 4.0);
    let x2 = x * x;
    let p = ((((((-2.726_142_3e-10 * x2 + 2.770_681_4e-8) * x2 - 2.101_024e-6) * x2
        - 5.692_506_4e-5)
        * x2
        - 7.349_906_3e-4)
        * x2
        - 2.954_600_1e-3)
        * x2
        - 1.609_603_3e-2)
        * x;
    let q = (((-1.456_607_2e-5 * x2 - 2.133_740_6e-4) * x2 - 1.682_827e-3) * x2 - 7.373_329_2e-3)
        * x2
        - 1.426_474e-2;
    p / q
}

/// GELU with the exact (erf) form, `x/2 · (1 + erf(x/√2))`, in place.
pub fn gelu_erf_in_place(xs: &mut [f32]) {
    for v in xs.iter_mut() {
        *v = 0.5 * *v * (1.0 + erf(*v * std::f32::consts::FRAC_1_SQRT_2));
    }
}

/// GELU with the tanh approximation, `x/2 · (1 + tanh(√(2/π)·(x + 0.044715·x³)))`, in place.
pub fn gelu_tanh_in_place(xs: &mut [f32]) {
    const K: f32 = 0.797_884_6; // √(2/π)
    for v in xs.iter_mut() {
        let x = *v;
        *v = 0.5 * x * (1.0 + (K * (x + 0.044_715 * x * x * x)).tanh());
    }
}

/// CLIP's `x·σ(1.702·x)`, in place.
pub fn quick_gelu_in_place(xs: &mut [f32]) {
    for v in xs.iter_mut() {
        *v /= 1.0 + exp(-1.702 * *v);
    }
}

/// Sum of a slice in 8 lanes (so it vectorises).
pub fn sum(xs: &[f32]) -> f32 {
    let mut lanes = [0f32; 8];
    let chunks = xs.chunks_exact(8);
    let tail: f32 = chunks.remainder().iter().sum();
    for c in chunks {
        for k in 0..8 {
            lanes[k] += c[k];
        }
    }
    lanes.iter().sum::<f32>() + tail
}

/// [`gelu_erf_in_place`] over a tensor: in parallel chunks on the CPU for f32, candle's op
/// otherwise.
pub fn gelu_erf(t: &Tensor) -> candle_core::Result<Tensor> {
    let Some(mut values) = f32_values(t)? else {
        return t.gelu_erf();
    };
    values.par_chunks_mut(1 << 14).for_each(gelu_erf_in_place);
    Tensor::from_vec(values, t.shape(), t.device())
}

/// A copy of a CPU f32 tensor's values in row-major order; `None` for other devices/dtypes.
fn f32_values(t: &Tensor) -> candle_core::Result<Option<Vec<f32>>> {
    if !t.device().is_cpu() || t.dtype() != DType::F32 {
        return Ok(None);
    }
    crate::cpu_tensor::with_f32(&t.contiguous()?, <[f32]>::to_vec)
}

/// `a·b + c`, fused (one rounding) where the target has FMA, which is what the compiler
/// vectorises into `vfmadd`; a multiply and an add otherwise.
#[inline(always)]
pub fn fma(a: f32, b: f32, c: f32) -> f32 {
    #[cfg(target_feature = "fma")]
    {
        a.mul_add(b, c)
    }
    #[cfg(not(target_feature = "fma"))]
    {
        a * b + c
    }
}

/// `Σ a[i]·b[i]` in 8 lanes (a strict left-to-right sum stays scalar: one add's latency per
/// element).
#[inline]
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    let mut lanes = [0f32; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: f32 = ca
        .remainder()
        .iter()
        .zip(cb.remainder())
        .map(|(x, y)| x * y)
        .sum();
    for (x, y) in ca.zip(cb) {
        for k in 0..8 {
            lanes[k] = fma(x[k], y[k], lanes[k]);
        }
    }
    lanes.iter().sum::<f32>() + tail
}

/// `y += a · x`.
#[inline]
pub fn axpy(y: &mut [f32], a: f32, x: &[f32]) {
    for (y, x) in y.iter_mut().zip(x) {
        *y = fma(a, *x, *y);
    }
}

/// `ln Σ e^x` over a slice, from its largest value (so no term overflows), with the
/// vectorised [`exp`]: a decoder step takes three of these over the 51,865 logits.
pub fn log_sum_exp(xs: &[f32]) -> f32 {
    let m = max(xs);
    if m == f32::NEG_INFINITY {
        return m;
    }
    let mut lanes = [0f32; 8];
    let chunks = xs.chunks_exact(8);
    let tail: f32 = chunks.remainder().iter().map(|&x| exp(x - m)).sum();
    for c in chunks {
        for k in 0..8 {
            lanes[k] += exp(c[k] - m);
        }
    }
    m + (lanes.iter().sum::<f32>() + tail).ln()
}

/// Largest value of a slice, 8 lanes at a time.
pub fn max(xs: &[f32]) -> f32 {
    let mut lanes = [f32::NEG_INFINITY; 8];
    let chunks = xs.chunks_exact(8);
    let tail = chunks
        .remainder()
        .iter()
        .copied()
        .fold(f32::NEG_INFINITY, f32::max);
    for c in chunks {
        for k in 0..8 {
            lanes[k] = if c[k] > lanes[k] { c[k] } else { lanes[k] };
        }
    }
    lanes.iter().copied().fold(tail, f32::max)
}

/// Softmax of one row, in place.
pub fn softmax_row(xs: &mut [f32]) {
    let m = max(xs);
    let mut lanes = [0f32; 8];
    let mut tail = 0f32;
    let mut chunks = xs.chunks_exact_mut(8);
    for c in &mut chunks {
        for k in 0..8 {
            c[k] = exp(c[k] - m);
            lanes[k] += c[k];
        }
    }
    for v in chunks.into_remainder() {
        *v = exp(*v - m);
        tail += *v;
    }
    let inv = 1.0 / (lanes.iter().sum::<f32>() + tail);
    for v in xs.iter_mut() {
        *v *= inv;
    }
}

/// Softmax over the last dimension: rows in parallel on the CPU for f32; candle's op
/// otherwise.
pub fn softmax_last_dim(t: &Tensor) -> candle_core::Result<Tensor> {
    if t.rank() == 0 {
        return candle_nn::ops::softmax_last_dim(t);
    }
    let Some(mut values) = f32_values(t)? else {
        return candle_nn::ops::softmax_last_dim(t);
    };
    let width = t.dim(candle_core::D::Minus1)?.max(1);
    values.par_chunks_mut(width).for_each(softmax_row);
    Tensor::from_vec(values, t.shape(), t.device())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_is_within_two_ulp_of_f64() {
        let mut worst = 0f64;
        let mut x = -87.0f32;
        while x < 88.0 {
            let want = f64::from(x).exp();
            let got = f64::from(exp(x));
            worst = worst.max(((got - want) / want).abs());
            x += 0.001_7;
        }
        assert!(worst < 2.5e-7, "relative error {worst}");
        assert_eq!(exp(f32::NEG_INFINITY), 0.0);
        assert_eq!(exp(-100.0), 0.0);
        assert_eq!(exp(0.0), 1.0);
        assert_eq!(exp(f32::INFINITY), f32::INFINITY);
    }

    #[test]
    fn dot_axpy_and_log_sum_exp_match_f64_sums() {
        let a: Vec<f32> = (0..1037)
            .map(|i| ((i * 7919) % 211) as f32 * 0.01 - 1.0)
            .collect();
        let b: Vec<f32> = (0..1037)
            .map(|i| ((i * 104_729) % 97) as f32 * 0.02 - 0.9)
            .collect();
        let want: f64 = a
            .iter()
            .zip(&b)
            .map(|(x, y)| f64::from(*x) * f64::from(*y))
            .sum();
        assert!((f64::from(dot(&a, &b)) - want).abs() < 1e-4, "{want}");
        let mut y = b.clone();
        axpy(&mut y, 0.5, &a);
        assert!(
            y.iter()
                .zip(&a)
                .zip(&b)
                .all(|((y, a), b)| (y - (b + 0.5 * a)).abs() < 1e-6)
        );
        // Logits-sized, with suppressed (-inf) entries as the decoder's rules leave them.
        let mut logits: Vec<f32> = (0..51_865)
            .map(|i| ((i * 31) % 1000) as f32 * 0.03 - 20.0)
            .collect();
        logits[100..2000].fill(f32::NEG_INFINITY);
        let m = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let want = f64::from(m)
            + logits
                .iter()
                .map(|&x| f64::from(x - m).exp())
                .sum::<f64>()
                .ln();
        assert!(
            (f64::from(log_sum_exp(&logits)) - want).abs() < 1e-5,
            "{want}"
        );
        assert_eq!(log_sum_exp(&[f32::NEG_INFINITY; 9]), f32::NEG_INFINITY);
        assert_eq!(max(&logits), m);
    }

    #[test]
    fn gelu_matches_candle_erf_gelu() -> candle_core::Result<()> {
        let dev = candle_core::Device::Cpu;
        let xs: Vec<f32> = (-9000..9000).map(|i| i as f32 * 0.001).collect();
        let x = Tensor::new(xs.as_slice(), &dev)?;
        let want = x.gelu_erf()?;
        let got = gelu_erf(&x)?;
        let diff = (want - got)?.abs()?.max(0)?.to_scalar::<f32>()?;
        assert!(diff < 2e-6, "{diff}");
        assert!((erf(10.0) - 1.0).abs() < 1e-6 && (erf(-10.0) + 1.0).abs() < 1e-6);
        Ok(())
    }

    #[test]
    fn softmax_matches_candle() -> candle_core::Result<()> {
        let dev = candle_core::Device::Cpu;
        let x = Tensor::randn(0f32, 3.0, (4, 7, 37), &dev)?;
        let mask = Tensor::new(&[0f32, f32::NEG_INFINITY], &dev)?.repeat(37 * 14)?;
        let x = (x.flatten_all()? + mask)?.reshape((4, 7, 37))?;
        let want = candle_nn::ops::softmax_last_dim(&x)?;
        let got = softmax_last_dim(&x)?;
        let diff = (want - &got)?
            .abs()?
            .flatten_all()?
            .max(0)?
            .to_scalar::<f32>()?;
        assert!(diff < 1e-6, "{diff}");
        // Masked entries are exact zeros, as with candle's op.
        let masked = got.flatten_all()?.to_vec1::<f32>()?;
        assert!(masked.iter().skip(1).step_by(2).all(|&v| v == 0.0));
        Ok(())
    }
}
