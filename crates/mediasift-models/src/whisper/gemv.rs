//! `x · Wᵀ` for a handful of rows (one decoder step: 1 token, or one per beam) on the CPU.
//!
//! A decoder step is memory-bound: every weight is read once to produce a few outputs, and the
//! output projection alone is 20–27 M weights (80–106 MB in f32). candle's general matmul
//! reached ~6 GB/s on that shape here (13.5 ms for tiny.en's projection); this kernel streams
//! each weight row once for all input rows, with 8-lane accumulators the compiler vectorises,
//! split over the rayon pool.

use candle_core::{DType, Storage, Tensor};
use rayon::prelude::*;

type Result<T> = candle_core::Result<T>;

/// Input rows handled by this kernel; more go through candle's matmul.
pub const MAX_ROWS: usize = 8;
/// Output features per parallel task.
const BLOCK: usize = 256;

fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: f32 = ca
        .remainder()
        .iter()
        .zip(cb.remainder())
        .map(|(x, y)| x * y)
        .sum();
    for (x, y) in ca.zip(cb) {
        for k in 0..8 {
            acc[k] += x[k] * y[k];
        }
    }
    acc.iter().sum::<f32>() + tail
}

/// `x` [rows, in] times `w` [out, in] transposed, plus `bias` [out]: [rows, out]. `None` when
/// the weights are not contiguous f32 on the CPU (the caller falls back to candle).
pub fn rows_times_transposed(
    x: &Tensor,
    w: &Tensor,
    bias: Option<&Tensor>,
) -> Result<Option<Tensor>> {
    if !w.device().is_cpu() || w.dtype() != DType::F32 || !w.is_contiguous() {
        return Ok(None);
    }
    let (out_dim, in_dim) = w.dims2()?;
    let xs: Vec<f32> = x.to_dtype(DType::F32)?.flatten_all()?.to_vec1()?;
    let rows = xs.len() / in_dim.max(1);
    if rows == 0 || rows > MAX_ROWS || rows * in_dim != xs.len() {
        return Ok(None);
    }
    let bias: Option<Vec<f32>> = bias.map(|b| b.to_vec1::<f32>()).transpose()?;
    let (guard, layout) = w.storage_and_layout();
    let Storage::Cpu(cpu) = &*guard else {
        return Ok(None);
    };
    let start = layout.start_offset();
    let weights = &cpu.as_slice::<f32>()?[start..start + out_dim * in_dim];
    // Output laid out [out, rows] so each task owns a contiguous block.
    let mut transposed = vec![0f32; out_dim * rows];
    transposed
        .par_chunks_mut(BLOCK * rows)
        .enumerate()
        .for_each(|(block, chunk)| {
            for (j, outs) in chunk.chunks_mut(rows).enumerate() {
                let o = block * BLOCK + j;
                let row = &weights[o * in_dim..(o + 1) * in_dim];
                let b = bias.as_ref().map_or(0.0, |b| b[o]);
                for (r, slot) in outs.iter_mut().enumerate() {
                    *slot = dot(row, &xs[r * in_dim..(r + 1) * in_dim]) + b;
                }
            }
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

    #[test]
    fn matches_candle_matmul() -> Result<()> {
        let d = Device::Cpu;
        let w = Tensor::randn(0f32, 1.0, (1000, 67), &d)?;
        let b = Tensor::randn(0f32, 1.0, 1000, &d)?;
        for rows in [1, 5] {
            let x = Tensor::randn(0f32, 1.0, (rows, 67), &d)?;
            let want = x.matmul(&w.t()?)?.broadcast_add(&b)?;
            let got = rows_times_transposed(&x, &w, Some(&b))?.expect("cpu f32");
            let diff = (want - got)?
                .abs()?
                .flatten_all()?
                .max(0)?
                .to_scalar::<f32>()?;
            assert!(diff < 1e-4, "rows {rows}: {diff}");
        }
        Ok(())
    }
}
