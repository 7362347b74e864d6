//! A transformer encoder on the CPU in f32, fused, one group of sequences per thread: the
//! layers BERT (norm after each block) and CLIP's ViT (norm before) share.
//!
//! Through candle, a layer was a dozen whole-batch passes (bias, residual, LayerNorm and the
//! activation as separate ops, most of them on one thread) between the products, with both
//! cores meeting at a barrier after each; the products (~95 % of the arithmetic) then took
//! about half the time. Here a batch is cut into one group of sequences per thread (balanced by
//! tokens, [`groups`]) and each group runs all layers on its own thread: single-threaded
//! OpenBLAS products whose destination already holds the bias and the residual (the product
//! accumulates onto it), LayerNorm and the activation over rows still in cache, and attention
//! per (sequence, head) read in place from the stacked projections. With fewer sequences than
//! threads, one group runs with its products and heads split over the pool.

use candle_core::{Result, Tensor};
use candle_nn::VarBuilder;
use gemm::Parallelism;
use rayon::prelude::*;

use crate::slice_gemm::product;
use crate::vecmath;

/// The feed-forward activation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Act {
    /// Exact (erf) GELU.
    Gelu,
    /// GELU's tanh approximation.
    GeluTanh,
    Relu,
    /// `x·σ(1.702·x)` (CLIP).
    QuickGelu,
}

/// Where each block's LayerNorm sits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum NormAt {
    /// `x = norm(x + block(x))` (BERT).
    After,
    /// `x = x + block(norm(x))` (CLIP, GPT-2).
    Before,
}

/// A linear layer: `weight` [outputs, inputs] row-major (PyTorch's layout), `bias` [outputs].
pub(crate) struct Dense {
    pub weight: Vec<f32>,
    pub bias: Vec<f32>,
    pub inputs: usize,
    pub outputs: usize,
}

/// LayerNorm over the last dimension.
pub(crate) struct Norm {
    pub gain: Vec<f32>,
    pub bias: Vec<f32>,
    pub eps: f32,
}

/// One encoder layer.
pub(crate) struct Layer {
    /// Query, key and value stacked: outputs 3·D.
    pub qkv: Dense,
    pub out: Dense,
    pub attn_norm: Norm,
    pub up: Dense,
    pub down: Dense,
    pub out_norm: Norm,
}

/// A tensor's values, row-major.
pub(crate) fn values(t: &Tensor) -> Result<Vec<f32>> {
    t.flatten_all()?.to_vec1::<f32>()
}

impl Dense {
    /// From a weight [outputs, inputs] and a bias (zeros without one).
    pub(crate) fn new(weight: &Tensor, bias: Option<&Tensor>) -> Result<Dense> {
        let (outputs, inputs) = weight.dims2()?;
        Ok(Dense {
            weight: values(weight)?,
            bias: match bias {
                Some(b) => values(b)?,
                None => vec![0.0; outputs],
            },
            inputs,
            outputs,
        })
    }

    /// `weight` (and `bias` when `with_bias`) under `vb`.
    pub(crate) fn load(
        vb: VarBuilder,
        outputs: usize,
        inputs: usize,
        with_bias: bool,
    ) -> Result<Dense> {
        let bias = with_bias.then(|| vb.get(outputs, "bias")).transpose()?;
        Dense::new(&vb.get((outputs, inputs), "weight")?, bias.as_ref())
    }

    /// `dst[r] = bias + x[r]·Wᵀ` for every row.
    pub(crate) fn forward_into(&self, x: &[f32], dst: &mut [f32], par: Parallelism) {
        self.apply(x, dst, false, par);
    }

    /// `dst[r] += bias + x[r]·Wᵀ` for every row (dst holds the residual).
    pub(crate) fn add_to(&self, x: &[f32], dst: &mut [f32], par: Parallelism) {
        self.apply(x, dst, true, par);
    }

    /// The bias is written (or added) first and the product accumulates onto it, so BLAS
    /// neither zeroes `dst` nor is it read again for the bias.
    fn apply(&self, x: &[f32], dst: &mut [f32], onto: bool, par: Parallelism) {
        let rows = x.len() / self.inputs;
        assert_eq!(dst.len(), rows * self.outputs, "dense output size");
        for row in dst.chunks_exact_mut(self.outputs) {
            if onto {
                for (d, b) in row.iter_mut().zip(&self.bias) {
                    *d += b;
                }
            } else {
                row.copy_from_slice(&self.bias);
            }
        }
        // Wᵀ [inputs, outputs]: element (i, j) is W[j, i], so row stride 1, column stride
        // `inputs`.
        product(
            dst,
            self.outputs,
            true,
            (x, self.inputs, 1),
            (&self.weight, 1, self.inputs),
            (rows, self.outputs, self.inputs),
            1.0,
            par,
        );
    }
}

impl Norm {
    pub(crate) fn new(gain: &Tensor, bias: &Tensor, eps: f32) -> Result<Norm> {
        Ok(Norm {
            gain: values(gain)?,
            bias: values(bias)?,
            eps,
        })
    }

    /// `weight` and `bias` of `d` values under `vb`.
    pub(crate) fn load(vb: VarBuilder, d: usize, eps: f32) -> Result<Norm> {
        Norm::new(&vb.get(d, "weight")?, &vb.get(d, "bias")?, eps)
    }

    /// LayerNorm of each row of `x` (rows of `gain.len()`), in place.
    pub(crate) fn apply(&self, x: &mut [f32]) {
        let d = self.gain.len();
        for row in x.chunks_exact_mut(d) {
            let mean = vecmath::sum(row) / d as f32;
            let mut lanes = [0f32; 8];
            let mut chunks = row.chunks_exact(8);
            for c in &mut chunks {
                for k in 0..8 {
                    let v = c[k] - mean;
                    lanes[k] += v * v;
                }
            }
            let tail: f32 = chunks
                .remainder()
                .iter()
                .map(|v| (v - mean) * (v - mean))
                .sum();
            let var = (lanes.iter().sum::<f32>() + tail) / d as f32;
            let inv = 1.0 / (var + self.eps).sqrt();
            for ((v, g), b) in row.iter_mut().zip(&self.gain).zip(&self.bias) {
                *v = (*v - mean) * inv * g + b;
            }
        }
    }
}

/// Sequences `[start, end)` per group: `groups` runs of consecutive sequences with about equal
/// token counts.
fn split(lens: &[usize], groups: usize) -> Vec<(usize, usize)> {
    let total: usize = lens.iter().sum();
    let mut out = Vec::with_capacity(groups);
    let (mut start, mut seen) = (0, 0);
    for (i, &len) in lens.iter().enumerate() {
        seen += len;
        let target = total * (out.len() + 1) / groups;
        if seen >= target && out.len() + 1 < groups {
            out.push((start, i + 1));
            start = i + 1;
        }
    }
    if start < lens.len() || out.is_empty() {
        out.push((start, lens.len()));
    }
    out
}

/// Runs `f` over groups of the sequences of `lens` in parallel: one group per thread when
/// there are enough sequences (each told to stay on its thread, `Parallelism::None`),
/// otherwise one group told to split its work over the pool. `f` gets the sequences
/// `[start, end)` of its group; the results come back in order.
pub(crate) fn groups<R: Send>(
    lens: &[usize],
    f: impl Fn((usize, usize), Parallelism) -> R + Sync,
) -> Vec<R> {
    let threads = rayon::current_num_threads().max(1);
    let parts = split(lens, threads.min(lens.len()).max(1));
    let par = if parts.len() >= threads {
        Parallelism::None
    } else {
        Parallelism::Rayon(0)
    };
    parts.par_iter().map(|&range| f(range, par)).collect()
}

/// The layers, and how they are wired.
pub(crate) struct Encoder {
    pub layers: Vec<Layer>,
    pub dims: usize,
    pub heads: usize,
    pub act: Act,
    pub norm_at: NormAt,
}

impl Encoder {
    /// Runs every layer over `x` [tokens, D], the tokens of sequences of `lens` back to back,
    /// in place.
    pub fn run(&self, x: &mut [f32], lens: &[usize], par: Parallelism) {
        let d = self.dims;
        let rows = x.len() / d;
        let inter = self.layers.first().map_or(0, |l| l.up.outputs);
        let mut qkv = vec![0f32; rows * 3 * d];
        let mut context = vec![0f32; rows * d];
        let mut up = vec![0f32; rows * inter];
        let mut normed = match self.norm_at {
            NormAt::Before => vec![0f32; rows * d],
            NormAt::After => Vec::new(),
        };
        for layer in &self.layers {
            match self.norm_at {
                NormAt::After => layer.qkv.forward_into(x, &mut qkv, par),
                NormAt::Before => {
                    normed.copy_from_slice(x);
                    layer.attn_norm.apply(&mut normed);
                    layer.qkv.forward_into(&normed, &mut qkv, par);
                }
            }
            self.attention(&qkv, lens, &mut context, par);
            layer.out.add_to(&context, x, par);
            match self.norm_at {
                NormAt::After => {
                    layer.attn_norm.apply(x);
                    layer.up.forward_into(x, &mut up, par);
                }
                NormAt::Before => {
                    normed.copy_from_slice(x);
                    layer.out_norm.apply(&mut normed);
                    layer.up.forward_into(&normed, &mut up, par);
                }
            }
            self.activate(&mut up);
            layer.down.add_to(&up, x, par);
            if self.norm_at == NormAt::After {
                layer.out_norm.apply(x);
            }
        }
    }

    fn activate(&self, xs: &mut [f32]) {
        match self.act {
            Act::Gelu => vecmath::gelu_erf_in_place(xs),
            Act::GeluTanh => vecmath::gelu_tanh_in_place(xs),
            Act::Relu => xs.iter_mut().for_each(|v| *v = v.max(0.0)),
            Act::QuickGelu => vecmath::quick_gelu_in_place(xs),
        }
    }

    /// Scaled dot-product attention of each sequence's tokens over themselves (no mask), from
    /// the stacked projections `qkv` [tokens, 3·D] into `context` [tokens, D].
    fn attention(&self, qkv: &[f32], lens: &[usize], context: &mut [f32], par: Parallelism) {
        let d = self.dims;
        let (h, dh) = (self.heads, d / self.heads);
        let scale = (dh as f32).powf(-0.5);
        let row = 3 * d;
        let mut start = 0;
        for &len in lens {
            let rows = &qkv[start * row..(start + len) * row];
            // One head: softmax(Q·Kᵀ·scale)·V [len, dh], read in place from the stacked rows.
            let head = |head: usize, out: &mut [f32], out_rs: usize| {
                let at = |which: usize| &rows[which * d + head * dh..];
                let mut scores = vec![0f32; len * len];
                product(
                    &mut scores,
                    len,
                    false,
                    (at(0), row, 1),
                    (at(1), 1, row),
                    (len, len, dh),
                    scale,
                    Parallelism::None,
                );
                scores.chunks_exact_mut(len).for_each(vecmath::softmax_row);
                product(
                    out,
                    out_rs,
                    false,
                    (&scores, len, 1),
                    (at(2), row, 1),
                    (len, dh, len),
                    1.0,
                    Parallelism::None,
                );
            };
            let ctx = &mut context[start * d..(start + len) * d];
            if matches!(par, Parallelism::None) {
                for i in 0..h {
                    head(i, &mut ctx[i * dh..], d);
                }
            } else {
                let outs: Vec<Vec<f32>> = (0..h)
                    .into_par_iter()
                    .map(|i| {
                        let mut out = vec![0f32; len * dh];
                        head(i, &mut out, dh);
                        out
                    })
                    .collect();
                for (i, out) in outs.iter().enumerate() {
                    for (dst, src) in ctx.chunks_exact_mut(d).zip(out.chunks_exact(dh)) {
                        dst[i * dh..(i + 1) * dh].copy_from_slice(src);
                    }
                }
            }
            start += len;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::split;

    #[test]
    fn groups_balance_tokens_and_cover_every_sentence() {
        assert_eq!(split(&[128; 32], 2), vec![(0, 16), (16, 32)]);
        assert_eq!(split(&[10, 10, 100, 10], 2), vec![(0, 3), (3, 4)]);
        assert_eq!(split(&[5], 2), vec![(0, 1)]);
        assert_eq!(split(&[], 2), vec![(0, 0)]);
        let g = split(&[3, 1, 4, 1, 5, 9, 2, 6], 3);
        assert_eq!(g.len(), 3);
        assert_eq!(g[0].0, 0);
        assert_eq!(g[2].1, 8);
        assert!(g.windows(2).all(|w| w[0].1 == w[1].0));
    }
}
