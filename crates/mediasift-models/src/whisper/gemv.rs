//! `x · Wᵀ` for a handful of rows (one decoder step: 1 token, or one per beam) on the CPU.
//!
//! A decoder step is memory-bound: every weight is read once to produce a few outputs, and the
//! output projection alone is 20–27 M weights (80–106 MB in f32). candle's general matmul
//! reached ~6 GB/s on that shape here (13.5 ms for tiny.en's projection); this kernel streams
//! each weight row once for all input rows, with 8-lane accumulators the compiler vectorises,
//! split over the rayon pool.
//!
//! Weights may be f16: the CTranslate2 Whisper models we install store them in f16, so an f16
//! copy is the same numbers in half the bytes, and each row is widened to f32 (F16C) in L1
//! before the same f32 dot products. The products are exact and the sums run in f32, as with
//! f32 weights; only the bytes read from memory halve.

use candle_core::{DType, Storage, Tensor};
use half::f16;
#[cfg(not(all(
    target_arch = "x86_64",
    target_feature = "avx2",
    target_feature = "fma",
    target_feature = "f16c"
)))]
use half::slice::HalfFloatSliceExt;
use rayon::prelude::*;

type Result<T> = candle_core::Result<T>;

/// Input rows handled by this kernel; more go through candle's matmul.
pub const MAX_ROWS: usize = 8;
/// Output features per parallel task.
const BLOCK: usize = 256;

#[cfg(not(all(
    target_arch = "x86_64",
    target_feature = "avx2",
    target_feature = "fma",
    target_feature = "f16c"
)))]
use crate::vecmath::dot;

/// A weight matrix [out, in] as stored.
#[derive(Clone, Copy)]
enum Weights<'a> {
    F32(&'a [f32]),
    F16(&'a [f16]),
}

#[cfg(not(all(
    target_arch = "x86_64",
    target_feature = "avx2",
    target_feature = "fma",
    target_feature = "f16c"
)))]
impl Weights<'_> {
    /// Row `o` as f32: borrowed, or widened into `buf`.
    fn row<'b>(&'b self, o: usize, in_dim: usize, buf: &'b mut [f32]) -> &'b [f32] {
        match *self {
            Weights::F32(w) => &w[o * in_dim..(o + 1) * in_dim],
            Weights::F16(w) => {
                w[o * in_dim..(o + 1) * in_dim].convert_to_f32_slice(buf);
                buf
            }
        }
    }
}

/// Outputs of the weight rows from `first` on, `rows` values each, into `outs`: the SIMD
/// kernels where the target has them, else each row widened to f32 and plain dot products.
fn block_rows(
    weights: Weights<'_>,
    xs: &[f32],
    rows: usize,
    in_dim: usize,
    first: usize,
    bias: Option<&[f32]>,
    outs: &mut [f32],
) {
    #[cfg(all(
        target_arch = "x86_64",
        target_feature = "avx2",
        target_feature = "fma",
        target_feature = "f16c"
    ))]
    {
        use super::gemv_simd::block;
        match weights {
            Weights::F32(w) => block(w, xs, rows, in_dim, first, bias, outs),
            Weights::F16(w) => block(w, xs, rows, in_dim, first, bias, outs),
        }
    }
    #[cfg(not(all(
        target_arch = "x86_64",
        target_feature = "avx2",
        target_feature = "fma",
        target_feature = "f16c"
    )))]
    {
        let mut buf = vec![0f32; in_dim];
        for (j, slot) in outs.chunks_mut(rows).enumerate() {
            let o = first + j;
            let row = weights.row(o, in_dim, &mut buf);
            let b = bias.map_or(0.0, |b| b[o]);
            for (r, s) in slot.iter_mut().enumerate() {
                *s = dot(row, &xs[r * in_dim..(r + 1) * in_dim]) + b;
            }
        }
    }
}

/// `x` [rows, in] times `w` [out, in] transposed, plus `bias` [out]: [rows, out]. `w` is f32 or
/// f16. `None` when the weights are not contiguous f32/f16 on the CPU or there are too many rows
/// (the caller falls back to candle).
pub fn rows_times_transposed(
    x: &Tensor,
    w: &Tensor,
    bias: Option<&Tensor>,
) -> Result<Option<Tensor>> {
    if !w.device().is_cpu() || !matches!(w.dtype(), DType::F32 | DType::F16) || !w.is_contiguous() {
        return Ok(None);
    }
    let (out_dim, in_dim) = w.dims2()?;
    let xs: Vec<f32> = x.to_dtype(DType::F32)?.flatten_all()?.to_vec1()?;
    let rows = xs.len() / in_dim.max(1);
    if rows == 0 || rows > MAX_ROWS || rows * in_dim != xs.len() {
        return Ok(None);
    }
    let bias: Option<Vec<f32>> = bias
        .map(|b| b.to_dtype(DType::F32)?.to_vec1::<f32>())
        .transpose()?;
    let (guard, layout) = w.storage_and_layout();
    let Storage::Cpu(cpu) = &*guard else {
        return Ok(None);
    };
    let span = layout.start_offset()..layout.start_offset() + out_dim * in_dim;
    let weights = match w.dtype() {
        DType::F16 => Weights::F16(&cpu.as_slice::<f16>()?[span]),
        _ => Weights::F32(&cpu.as_slice::<f32>()?[span]),
    };
    // Output laid out [out, rows] so each task owns a contiguous block.
    let mut transposed = vec![0f32; out_dim * rows];
    transposed
        .par_chunks_mut(BLOCK * rows)
        .enumerate()
        .for_each(|(block, chunk)| {
            block_rows(
                weights,
                &xs,
                rows,
                in_dim,
                block * BLOCK,
                bias.as_deref(),
                chunk,
            );
        });
    drop(guard);
    let mut y = vec![0f32; rows * out_dim];
    for o in 0..out_dim {
        for r in 0..rows {
            y[r * out_dim + o] = transposed[o * rows + r];
        }
    }
    Ok(Some(Tensor::from_vec(y, (rows, out_dim), x.device())?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    fn max_diff(a: &Tensor, b: &Tensor) -> Result<f32> {
        (a - b)?.abs()?.flatten_all()?.max(0)?.to_scalar::<f32>()
    }

    #[test]
    fn matches_candle_matmul() -> Result<()> {
        let d = Device::Cpu;
        let w = Tensor::randn(0f32, 1.0, (1000, 67), &d)?;
        let b = Tensor::randn(0f32, 1.0, 1000, &d)?;
        for rows in [1, 5] {
            let x = Tensor::randn(0f32, 1.0, (rows, 67), &d)?;
            let want = x.matmul(&w.t()?)?.broadcast_add(&b)?;
            let got = rows_times_transposed(&x, &w, Some(&b))?.expect("cpu f32");
            let diff = max_diff(&want, &got)?;
            assert!(diff < 1e-4, "rows {rows}: {diff}");
        }
        Ok(())
    }

    #[test]
    fn f16_weights_give_the_f32_products_of_the_same_values() -> Result<()> {
        let d = Device::Cpu;
        // Values exactly representable in f16, so both paths multiply the same numbers.
        let w16 = Tensor::randn(0f32, 1.0, (700, 72), &d)?.to_dtype(DType::F16)?;
        let w32 = w16.to_dtype(DType::F32)?;
        let b = Tensor::randn(0f32, 1.0, 700, &d)?;
        for rows in [1, 3, 8] {
            let x = Tensor::randn(0f32, 1.0, (rows, 72), &d)?;
            let want = rows_times_transposed(&x, &w32, Some(&b))?.expect("f32");
            let got = rows_times_transposed(&x, &w16, Some(&b))?.expect("f16");
            assert_eq!(max_diff(&want, &got)?, 0.0, "rows {rows}");
            let reference = x.matmul(&w32.t()?)?.broadcast_add(&b)?;
            assert!(max_diff(&reference, &got)? < 1e-4, "rows {rows}");
        }
        assert!(
            rows_times_transposed(&Tensor::zeros((9, 72), DType::F32, &d)?, &w16, None)?.is_none()
        );
        Ok(())
    }
}

#[cfg(test)]
mod timing {
    use super::*;
    use candle_core::Device;

    #[test]
    #[ignore]
    fn gemv_bandwidth() -> Result<()> {
        let d = Device::Cpu;
        let w32 = Tensor::randn(0f32, 1.0, (51865, 512), &d)?;
        let w16 = w32.to_dtype(DType::F16)?;
        for rows in [1, 5] {
            let x = Tensor::randn(0f32, 1.0, (rows, 512), &d)?;
            for (name, w, bytes) in [("f32", &w32, 4.0), ("f16", &w16, 2.0)] {
                rows_times_transposed(&x, w, None)?;
                let n = 20;
                let t = std::time::Instant::now();
                for _ in 0..n {
                    std::hint::black_box(rows_times_transposed(&x, w, None)?);
                }
                let s = t.elapsed().as_secs_f64() / n as f64;
                eprintln!(
                    "rows {rows} {name}: {:.2} ms, {:.1} GB/s",
                    s * 1e3,
                    51865.0 * 512.0 * bytes / s / 1e9
                );
            }
        }
        Ok(())
    }
}
