//! A BERT encoder (sentence-transformers' MiniLM) for inference: Hugging Face parameter names,
//! candle for the projections, our CPU kernels for the rest.
//!
//! candle-transformers' BERT ran each attention as one small product per sentence and head
//! (384 products per batch of 32 sentences, each split over the thread pool on its own), its
//! GELU with the C library's scalar `erf`, and its softmax with scalar `exp`. Here the three
//! query, key and value projections are one product over every token of the batch, attention
//! runs one (sentence, head) per task over the rayon pool, its two products single-threaded
//! and read in place from the stacked projections, and GELU and softmax use
//! [`crate::vecmath`]. Other devices and dtypes take the same graph
//! through candle's ops.

use candle_core::{D, DType, Module, Tensor};
use candle_nn::{Embedding, LayerNorm, Linear, VarBuilder};
use candle_transformers::models::bert::{Config, HiddenAct};
use rayon::prelude::*;

use crate::vecmath;

type Result<T> = candle_core::Result<T>;

struct Layer {
    /// Query, key and value projections stacked: [3·D, D].
    qkv: Linear,
    out: Linear,
    attn_norm: LayerNorm,
    up: Linear,
    down: Linear,
    out_norm: LayerNorm,
}

/// A matrix inside a slice: element (i, j) at `i·rows + j·cols`.
struct Strided<'a> {
    values: &'a [f32],
    rows: usize,
    cols: usize,
}

impl Strided<'_> {
    /// Whether an m×n matrix with these strides lies inside the slice.
    fn holds(&self, m: usize, n: usize) -> bool {
        m == 0 || n == 0 || (m - 1) * self.rows + (n - 1) * self.cols < self.values.len()
    }
}

/// `c = a · b` for `a` [m, k] and `b` [k, n] given by strides, `c` contiguous [m, n]; on the
/// calling thread (the callers run many of these in parallel).
#[allow(unsafe_code)]
fn product(c: &mut [f32], a: Strided<'_>, b: Strided<'_>, (m, n, k): (usize, usize, usize)) {
    assert!(
        c.len() == m * n && a.holds(m, k) && b.holds(k, n),
        "product out of bounds"
    );
    // SAFETY: `a` and `b` address only elements inside their slices (asserted above), `c` is
    // exactly m×n contiguous and mutably borrowed, so it overlaps neither.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            c.as_mut_ptr(),
            1,
            n as isize,
            false,
            a.values.as_ptr(),
            a.cols as isize,
            a.rows as isize,
            b.values.as_ptr(),
            b.cols as isize,
            b.rows as isize,
            0.0,
            1.0,
            false,
            false,
            false,
            gemm::Parallelism::None,
        );
    }
}

/// BERT's embeddings and encoder layers (no pooler: sentence embeddings mean-pool the tokens).
pub struct Bert {
    words: Embedding,
    positions: Embedding,
    token_types: Embedding,
    embed_norm: LayerNorm,
    layers: Vec<Layer>,
    heads: usize,
    act: HiddenAct,
}

impl std::fmt::Debug for Bert {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bert")
            .field("layers", &self.layers.len())
            .field("heads", &self.heads)
            .finish_non_exhaustive()
    }
}

fn linear(vb: VarBuilder, in_dim: usize, out_dim: usize) -> Result<Linear> {
    candle_nn::linear(in_dim, out_dim, vb)
}

impl Bert {
    pub fn load(vb: VarBuilder, c: &Config) -> Result<Bert> {
        let vb = if vb.contains_tensor("bert.embeddings.word_embeddings.weight") {
            vb.pp("bert")
        } else {
            vb
        };
        let d = c.hidden_size;
        let emb = vb.pp("embeddings");
        let norm = |vb: VarBuilder| candle_nn::layer_norm(d, c.layer_norm_eps, vb);
        let layers = (0..c.num_hidden_layers)
            .map(|i| {
                let vb = vb.pp(format!("encoder.layer.{i}"));
                let att = vb.pp("attention");
                let part = |name: &str| -> Result<(Tensor, Tensor)> {
                    let p = att.pp("self").pp(name);
                    Ok((p.get((d, d), "weight")?, p.get(d, "bias")?))
                };
                let (q, k, v) = (part("query")?, part("key")?, part("value")?);
                let qkv = Linear::new(
                    Tensor::cat(&[&q.0, &k.0, &v.0], 0)?,
                    Some(Tensor::cat(&[&q.1, &k.1, &v.1], 0)?),
                );
                Ok(Layer {
                    qkv,
                    out: linear(att.pp("output").pp("dense"), d, d)?,
                    attn_norm: norm(att.pp("output").pp("LayerNorm"))?,
                    up: linear(vb.pp("intermediate").pp("dense"), d, c.intermediate_size)?,
                    down: linear(vb.pp("output").pp("dense"), c.intermediate_size, d)?,
                    out_norm: norm(vb.pp("output").pp("LayerNorm"))?,
                })
            })
            .collect::<Result<_>>()?;
        if c.num_attention_heads == 0 || !d.is_multiple_of(c.num_attention_heads) {
            candle_core::bail!(
                "{d} features do not split into {} heads",
                c.num_attention_heads
            );
        }
        Ok(Bert {
            words: candle_nn::embedding(c.vocab_size, d, emb.pp("word_embeddings"))?,
            positions: candle_nn::embedding(
                c.max_position_embeddings,
                d,
                emb.pp("position_embeddings"),
            )?,
            token_types: candle_nn::embedding(
                c.type_vocab_size,
                d,
                emb.pp("token_type_embeddings"),
            )?,
            embed_norm: norm(emb.pp("LayerNorm"))?,
            layers,
            heads: c.num_attention_heads,
            act: c.hidden_act,
        })
    }

    /// Hidden states [B, T, D] of token ids [B, T] (token type 0) with `mask` [B, T] (1 for
    /// real tokens, 0 for padding).
    pub fn forward(&self, ids: &Tensor, mask: &Tensor) -> Result<Tensor> {
        let (b, t) = ids.dims2()?;
        let device = ids.device();
        let positions = Tensor::arange(0u32, t as u32, device)?;
        let types = Tensor::zeros(1, DType::U32, device)?;
        let x = self
            .words
            .forward(ids)?
            .broadcast_add(&self.token_types.forward(&types)?)?
            .broadcast_add(&self.positions.forward(&positions)?)?;
        let mut x = self.embed_norm.forward(&x)?.reshape((b * t, ()))?;
        let keep: Vec<u32> = mask.flatten_all()?.to_dtype(DType::U32)?.to_vec1()?;
        for layer in &self.layers {
            let qkv = layer.qkv.forward(&x)?;
            let context = self.attention(&qkv, &keep, (b, t))?;
            x = layer
                .attn_norm
                .forward(&(layer.out.forward(&context)? + &x)?)?;
            let up = layer.up.forward(&x)?;
            let up = match self.act {
                HiddenAct::Gelu => vecmath::gelu_erf(&up)?,
                HiddenAct::GeluApproximate => up.gelu()?,
                HiddenAct::Relu => up.relu()?,
            };
            x = layer.out_norm.forward(&(layer.down.forward(&up)? + &x)?)?;
        }
        x.reshape((b, t, ()))
    }

    /// Scaled dot-product attention of every token over the real tokens of its sentence, from
    /// the stacked projections `qkv` [B·T, 3·D]: [B·T, D].
    fn attention(&self, qkv: &Tensor, keep: &[u32], (b, t): (usize, usize)) -> Result<Tensor> {
        let d = qkv.dim(1)? / 3;
        let (h, dh) = (self.heads, d / self.heads);
        if !qkv.device().is_cpu() {
            return self.attention_candle(qkv, keep, (b, t));
        }
        let qkv = qkv.contiguous()?;
        let scale = (dh as f32).powf(-0.5);
        let row = 3 * d;
        let heads = crate::cpu_tensor::with_f32(&qkv, |all| -> Vec<Vec<f32>> {
            (0..b * h)
                .into_par_iter()
                .map(|bh| {
                    let (s, head) = (bh / h, bh % h);
                    let rows = &all[s * t * row..(s + 1) * t * row];
                    let at = |which: usize| &rows[which * d + head * dh..];
                    // Scores [T, T] = Q·Kᵀ straight from the stacked rows (strides, no copies).
                    let mut scores = vec![0f32; t * t];
                    product(
                        &mut scores,
                        Strided {
                            values: at(0),
                            rows: row,
                            cols: 1,
                        },
                        Strided {
                            values: at(1),
                            rows: 1,
                            cols: row,
                        },
                        (t, t, dh),
                    );
                    for sc in scores.chunks_exact_mut(t) {
                        for (j, v) in sc.iter_mut().enumerate() {
                            *v = if keep[s * t + j] != 0 {
                                *v * scale
                            } else {
                                // As Hugging Face's mask: the lowest finite value, so a row
                                // with no real token is uniform rather than NaN.
                                f32::MIN
                            };
                        }
                        vecmath::softmax_row(sc);
                    }
                    let mut out = vec![0f32; t * dh];
                    product(
                        &mut out,
                        Strided {
                            values: &scores,
                            rows: t,
                            cols: 1,
                        },
                        Strided {
                            values: at(2),
                            rows: row,
                            cols: 1,
                        },
                        (t, dh, t),
                    );
                    out
                })
                .collect()
        })?;
        let Some(heads) = heads else {
            return self.attention_candle(&qkv, keep, (b, t));
        };
        // [B, H, T, dh] → [B·T, D].
        let mut context = vec![0f32; b * t * d];
        for (bh, out) in heads.iter().enumerate() {
            let (s, head) = (bh / h, bh % h);
            for (i, o) in out.chunks_exact(dh).enumerate() {
                let at = (s * t + i) * d + head * dh;
                context[at..at + dh].copy_from_slice(o);
            }
        }
        Tensor::from_vec(context, (b * t, d), qkv.device())
    }

    /// [`Bert::attention`] through candle's ops (other devices and dtypes).
    fn attention_candle(
        &self,
        qkv: &Tensor,
        keep: &[u32],
        (b, t): (usize, usize),
    ) -> Result<Tensor> {
        let d = qkv.dim(1)? / 3;
        let (h, dh) = (self.heads, d / self.heads);
        let split = |which: usize| -> Result<Tensor> {
            qkv.narrow(1, which * d, d)?
                .reshape((b, t, h, dh))?
                .transpose(1, 2)?
                .contiguous()
        };
        let (q, k, v) = (split(0)?, split(1)?, split(2)?);
        let bias: Vec<f32> = keep
            .iter()
            .map(|&m| if m != 0 { 0.0 } else { f32::MIN })
            .collect();
        let bias = Tensor::from_vec(bias, (b, 1, 1, t), qkv.device())?.to_dtype(qkv.dtype())?;
        let scores = (q.matmul(&k.t()?)? * (dh as f64).powf(-0.5))?.broadcast_add(&bias)?;
        let probs = candle_nn::ops::softmax(&scores, D::Minus1)?;
        probs.matmul(&v)?.transpose(1, 2)?.reshape((b * t, d))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn cpu_attention_matches_the_candle_path_with_padding() -> Result<()> {
        let dev = Device::Cpu;
        let (b, t, h, dh) = (3, 5, 3, 4);
        let d = h * dh;
        let bert = Bert {
            words: Embedding::new(Tensor::zeros((1, d), DType::F32, &dev)?, d),
            positions: Embedding::new(Tensor::zeros((1, d), DType::F32, &dev)?, d),
            token_types: Embedding::new(Tensor::zeros((1, d), DType::F32, &dev)?, d),
            embed_norm: LayerNorm::new(
                Tensor::ones(d, DType::F32, &dev)?,
                Tensor::zeros(d, DType::F32, &dev)?,
                1e-12,
            ),
            layers: Vec::new(),
            heads: h,
            act: HiddenAct::Gelu,
        };
        let qkv = Tensor::randn(0f32, 1.0, (b * t, 3 * d), &dev)?;
        // The second sentence has two padding tokens; the third is all padding (uniform
        // attention, as with Hugging Face's finite mask, not NaN).
        let keep = [1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0];
        let want = bert.attention_candle(&qkv, &keep, (b, t))?;
        let got = bert.attention(&qkv, &keep, (b, t))?;
        let diff = (want - got)?
            .abs()?
            .flatten_all()?
            .max(0)?
            .to_scalar::<f32>()?;
        assert!(diff < 1e-5, "{diff}");
        Ok(())
    }
}
