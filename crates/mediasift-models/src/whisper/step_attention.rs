//! Attention for one decoder step (one new token per sequence) on the CPU.
//!
//! Through candle, a step's attention is one matrix product per sequence and head with a single
//! query row (8–40 calls per layer), each packed and dispatched as a general product: that was
//! a quarter of Whisper's decoding time here. These kernels compute the same thing directly:
//! per head, the query's dot products with every key, a softmax, and the weighted sum of the
//! values, streaming keys and values once for all the rows that share them.

use candle_core::Tensor;
use rayon::prelude::*;

use super::kv_cache::KvCache;
use crate::cpu_tensor::with_f32 as with_slice;
use crate::vecmath::{axpy, dot, softmax_row};

type Result<T> = candle_core::Result<T>;

/// Cross-attention of `rows` queries `q` [rows, H·dh] (already scaled) over one audio's keys,
/// stored transposed (`kt` [1, H, dh, S]), and values `v` [1, H, S, dh]: [rows, H·dh]. `None`
/// when the tensors are not contiguous f32 on the CPU.
pub fn cross(q: &Tensor, kt: &Tensor, v: &Tensor) -> Result<Option<Tensor>> {
    let (rows, d) = q.dims2()?;
    let (one, heads, dh, s) = kt.dims4()?;
    if one != 1 || heads * dh != d || v.dims4()? != (1, heads, s, dh) {
        return Ok(None);
    }
    let Some(qs) = with_slice(&q.contiguous()?, <[f32]>::to_vec)? else {
        return Ok(None);
    };
    let per_head = with_slice(kt, |kt| {
        with_slice(v, |v| {
            (0..heads)
                .into_par_iter()
                .map(|h| {
                    let kt = &kt[h * dh * s..(h + 1) * dh * s];
                    let v = &v[h * s * dh..(h + 1) * s * dh];
                    let mut scores = vec![0f32; rows * s];
                    // Row d of the transposed keys scales into every query's scores.
                    for (di, krow) in kt.chunks_exact(s).enumerate() {
                        for (r, sc) in scores.chunks_exact_mut(s).enumerate() {
                            axpy(sc, qs[r * d + h * dh + di], krow);
                        }
                    }
                    let mut out = vec![0f32; rows * dh];
                    for (sc, o) in scores.chunks_exact_mut(s).zip(out.chunks_exact_mut(dh)) {
                        softmax_row(sc);
                        for (&p, vrow) in sc.iter().zip(v.chunks_exact(dh)) {
                            axpy(o, p, vrow);
                        }
                    }
                    out
                })
                .collect::<Vec<Vec<f32>>>()
        })
    })?
    .transpose()?
    .flatten();
    let Some(per_head) = per_head else {
        return Ok(None);
    };
    let mut y = vec![0f32; rows * d];
    for (h, out) in per_head.iter().enumerate() {
        for r in 0..rows {
            y[r * d + h * dh..r * d + (h + 1) * dh].copy_from_slice(&out[r * dh..(r + 1) * dh]);
        }
    }
    Ok(Some(Tensor::from_vec(y, (rows, d), q.device())?))
}

/// Self-attention of one new query per sequence `q` [rows, H·dh] (already scaled) over that
/// sequence's cached keys and values (the new token's included): [rows, H·dh]. `None` when
/// the query is not contiguous f32 on the CPU or the cache holds other rows.
pub fn cached(q: &Tensor, cache: &KvCache, heads: usize) -> Result<Option<Tensor>> {
    let (rows, d) = q.dims2()?;
    if rows != cache.rows() || heads == 0 || d % heads != 0 || cache.is_empty() {
        return Ok(None);
    }
    let dh = d / heads;
    let Some(qs) = with_slice(&q.contiguous()?, <[f32]>::to_vec)? else {
        return Ok(None);
    };
    let outs: Vec<Vec<f32>> = (0..rows * heads)
        .into_par_iter()
        .map(|rh| {
            let (r, h) = (rh / heads, rh % heads);
            let q = &qs[r * d + h * dh..r * d + (h + 1) * dh];
            let seq = cache.sequence(r);
            // Position t's head h: d values apart from position t + 1's.
            let head = |buf: &[f32]| -> Vec<std::ops::Range<usize>> {
                (0..buf.len() / d)
                    .map(|t| t * d + h * dh..t * d + (h + 1) * dh)
                    .collect()
            };
            let spans = head(&seq.keys);
            let mut scores: Vec<f32> = spans.iter().map(|s| dot(&seq.keys[s.clone()], q)).collect();
            softmax_row(&mut scores);
            let mut out = vec![0f32; dh];
            for (&p, s) in scores.iter().zip(&spans) {
                axpy(&mut out, p, &seq.values[s.clone()]);
            }
            out
        })
        .collect();
    // (row, head) order is [rows, H, dh]: already the output layout.
    Ok(Some(Tensor::from_vec(
        outs.concat(),
        (rows, d),
        q.device(),
    )?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    /// Attention the candle way: [B, H, Tq, dh] queries, [B, H, dh, S] keys, [B, H, S, dh] values.
    fn reference(q: &Tensor, kt: &Tensor, v: &Tensor) -> Result<Tensor> {
        let w = candle_nn::ops::softmax_last_dim(&q.matmul(kt)?)?;
        w.matmul(v)
    }

    fn max_diff(a: &Tensor, b: &Tensor) -> Result<f32> {
        (a - b)?.abs()?.flatten_all()?.max(0)?.to_scalar::<f32>()
    }

    #[test]
    fn cross_attention_matches_candle() -> Result<()> {
        let dev = Device::Cpu;
        let (heads, dh, s) = (4, 16, 75);
        let kt = Tensor::randn(0f32, 1.0, (1, heads, dh, s), &dev)?;
        let v = Tensor::randn(0f32, 1.0, (1, heads, s, dh), &dev)?;
        for rows in [1, 5] {
            let q = Tensor::randn(0f32, 0.5, (rows, heads * dh), &dev)?;
            // Rows as the queries of one sequence: [1, H, rows, dh].
            let q4 = q
                .reshape((1, rows, heads, dh))?
                .transpose(1, 2)?
                .contiguous()?;
            let want = reference(&q4, &kt, &v)?
                .transpose(1, 2)?
                .reshape((rows, heads * dh))?;
            let got = cross(&q, &kt, &v)?.expect("cpu f32");
            assert!(max_diff(&want, &got)? < 1e-5, "rows {rows}");
        }
        Ok(())
    }

    #[test]
    fn cached_self_attention_matches_candle() -> Result<()> {
        let dev = Device::Cpu;
        let (rows, heads, t, dh) = (3, 4, 9, 16);
        // Projections [rows, T, H·dh], cached in two appends.
        let k = Tensor::randn(0f32, 1.0, (rows, t, heads * dh), &dev)?;
        let v = Tensor::randn(0f32, 1.0, (rows, t, heads * dh), &dev)?;
        let mut cache = KvCache::default();
        cache.append(&k.narrow(1, 0, 5)?, &v.narrow(1, 0, 5)?)?;
        cache.append(&k.narrow(1, 5, 4)?, &v.narrow(1, 5, 4)?)?;
        let split = |x: &Tensor| -> Result<Tensor> {
            x.reshape((rows, t, heads, dh))?
                .transpose(1, 2)?
                .contiguous()
        };
        let q = Tensor::randn(0f32, 0.5, (rows, heads * dh), &dev)?;
        let q4 = q
            .reshape((rows, 1, heads, dh))?
            .transpose(1, 2)?
            .contiguous()?;
        let want = reference(&q4, &split(&k)?.t()?.contiguous()?, &split(&v)?)?
            .transpose(1, 2)?
            .reshape((rows, heads * dh))?;
        let got = cached(&q, &cache, heads)?.expect("cpu f32");
        assert!(max_diff(&want, &got)? < 1e-5);
        // Not for another number of rows.
        assert!(cached(&q.narrow(0, 0, 2)?, &cache, heads)?.is_none());
        Ok(())
    }
}
