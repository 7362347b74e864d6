//! Whisper's encoder and decoder in candle, loading Hugging Face parameter names, with a
//! self-attention KV cache in the decoder (each step runs one token, not the whole prefix) and
//! the cross-attention keys/values computed once per window.

use candle_core::{DType, Device, Module, Tensor};
use candle_nn::{Conv1d, Conv1dConfig, LayerNorm, Linear, VarBuilder};
use serde::Deserialize;

use super::kv_cache::KvCache;
use crate::cpu_tensor::with_f32;
use crate::packed_gemm::{Epilogue, PackedB};
use rayon::prelude::*;

type Result<T> = candle_core::Result<T>;

/// Model dimensions, from a Hugging Face Whisper `config.json`.
#[derive(Debug, Clone, Deserialize)]
pub struct WhisperConfig {
    pub d_model: usize,
    pub num_mel_bins: usize,
    pub vocab_size: usize,
    pub max_source_positions: usize,
    pub max_target_positions: usize,
    pub encoder_layers: usize,
    pub encoder_attention_heads: usize,
    pub decoder_layers: usize,
    pub decoder_attention_heads: usize,
}

/// A linear layer, plus an f16 copy of its weight for decoder steps when the checkpoint
/// stores f16 (the same values in half the bytes; see [`super::gemv`]), or its weight packed
/// for [`crate::packed_gemm`]'s kernels (the encoder's, on the CPU).
#[derive(Debug)]
struct Proj {
    linear: Linear,
    half: Option<Tensor>,
    packed: Option<PackedB>,
}

/// Rows of a packed projection per task: 96 rows of up to 1536 inputs stay in L2.
const PACKED_ROWS: usize = 96;

impl Proj {
    fn load(vb: VarBuilder, dims: (usize, usize), bias: bool, half: bool) -> Result<Proj> {
        let (in_dim, out_dim) = dims;
        let linear = if bias {
            candle_nn::linear(in_dim, out_dim, vb.clone())?
        } else {
            candle_nn::linear_no_bias(in_dim, out_dim, vb.clone())?
        };
        let half = if half {
            Some(vb.get_unchecked_dtype("weight", DType::F16)?)
        } else {
            None
        };
        Ok(Proj {
            linear,
            half,
            packed: None,
        })
    }

    /// Packs the weight and bias for the CPU kernels (which [`Proj::forward`] then uses for
    /// f32 inputs on the CPU).
    fn packed(mut self) -> Result<Proj> {
        if self.linear.weight().device().is_cpu() {
            let w = self.linear.weight().to_dtype(DType::F32)?;
            let (out_dim, in_dim) = w.dims2()?;
            let wt = w.t()?.contiguous()?.flatten_all()?.to_vec1::<f32>()?;
            let bias = match self.linear.bias() {
                Some(b) => b.to_dtype(DType::F32)?.to_vec1::<f32>()?,
                None => vec![0.0; out_dim],
            };
            self.packed = Some(PackedB::new(&wt, &bias, in_dim, out_dim));
        }
        Ok(self)
    }

    /// `residual + x · Wᵀ + b`, with the residual added in the packed kernels' registers when
    /// the weight is packed.
    fn forward_onto(&self, x: &Tensor, residual: &Tensor) -> Result<Tensor> {
        match self.forward_packed(x, Some(residual))? {
            Some(y) => Ok(y),
            None => residual + self.forward(x)?,
        }
    }

    /// `x · Wᵀ + b (+ residual)` on the packed weight, rows in parallel; `None` when the weight
    /// is not packed or the tensors are not contiguous f32 on the CPU.
    fn forward_packed(&self, x: &Tensor, residual: Option<&Tensor>) -> Result<Option<Tensor>> {
        let Some(packed) = &self.packed else {
            return Ok(None);
        };
        let dims = x.dims().to_vec();
        let (in_dim, out_dim) = self.linear.weight().dims2().map(|(o, i)| (i, o))?;
        if dims.last() != Some(&in_dim) {
            return Ok(None);
        }
        let rows = x.elem_count() / in_dim.max(1);
        let mut out = match residual.map(|r| with_f32(r, <[f32]>::to_vec)).transpose()? {
            Some(Some(r)) if r.len() == rows * out_dim => r,
            Some(_) => return Ok(None),
            None => vec![0f32; rows * out_dim],
        };
        let epi = Epilogue {
            add_c: residual.is_some(),
            clamp: None,
        };
        let done = with_f32(x, |x| {
            out.par_chunks_mut(PACKED_ROWS * out_dim)
                .zip(x.par_chunks(PACKED_ROWS * in_dim))
                .for_each(|(o, x)| packed.apply(o, out_dim, x, in_dim, x.len() / in_dim, epi));
        })?;
        if done.is_none() {
            return Ok(None);
        }
        let mut shape = dims;
        if let Some(last) = shape.last_mut() {
            *last = out_dim;
        }
        Ok(Some(Tensor::from_vec(out, shape, x.device())?))
    }

    /// `x · Wᵀ + b`: on the packed weight when there is one; a few rows (decoder steps)
    /// through [`super::gemv`], reading the f16 copy when there is one.
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        if let Some(y) = self.forward_packed(x, None)? {
            return Ok(y);
        }
        let dims = x.dims().to_vec();
        let d = dims[dims.len() - 1];
        let rows = x.elem_count() / d.max(1);
        if rows <= super::gemv::MAX_ROWS {
            let flat = x.reshape((rows, d))?;
            let weight = self.half.as_ref().unwrap_or(self.linear.weight());
            if let Some(y) = super::gemv::rows_times_transposed(&flat, weight, self.linear.bias())?
            {
                let mut out = dims;
                if let Some(last) = out.last_mut() {
                    *last = y.dim(1)?;
                }
                return y.reshape(out);
            }
        }
        self.linear.forward(x)
    }
}

/// What a decoder step attends over.
enum StepOver<'a> {
    /// One audio's keys, transposed [1, H, dh, S], and values [1, H, S, dh].
    Audio(&'a Tensor, &'a Tensor),
    /// Each sequence's own cached keys and values.
    Cache(&'a KvCache),
}

#[derive(Debug)]
struct Attention {
    q: Proj,
    k: Proj,
    v: Proj,
    out: Proj,
    heads: usize,
}

impl Attention {
    fn load(vb: VarBuilder, d: usize, heads: usize, half: bool) -> Result<Attention> {
        Ok(Attention {
            q: Proj::load(vb.pp("q_proj"), (d, d), true, half)?,
            k: Proj::load(vb.pp("k_proj"), (d, d), false, half)?,
            v: Proj::load(vb.pp("v_proj"), (d, d), true, half)?,
            out: Proj::load(vb.pp("out_proj"), (d, d), true, half)?,
            heads,
        })
    }

    /// [B, T, D] → [B, H, T, D/H].
    fn split(&self, x: &Tensor) -> Result<Tensor> {
        let (b, t, d) = x.dims3()?;
        x.reshape((b, t, self.heads, d / self.heads))?
            .transpose(1, 2)?
            .contiguous()
    }

    fn keys_values(&self, x: &Tensor) -> Result<(Tensor, Tensor)> {
        Ok((
            self.split(&self.k.forward(x)?)?,
            self.split(&self.v.forward(x)?)?,
        ))
    }

    /// Scaled dot products of `x`'s queries with keys given transposed (`kt`: [B, H, D/H, T]):
    /// [B, H, T_x, T], before the softmax.
    fn scores(&self, x: &Tensor, kt: &Tensor) -> Result<Tensor> {
        self.queries(x)?.matmul(kt)
    }

    /// `x`'s queries, scaled by 1/√dh, [B, T, D] → [B, H, T, dh].
    fn queries(&self, x: &Tensor) -> Result<Tensor> {
        let d = x.dim(2)?;
        let scale = ((d / self.heads) as f64).powf(-0.5);
        self.split(&(self.q.forward(x)? * scale)?)
    }

    /// One decoder step (`x` [rows, 1, D]) through the CPU step kernels: over each row's own
    /// cached keys and values, or over one audio's keys, stored transposed, and values.
    /// `None` where the kernels do not apply.
    fn step(&self, x: &Tensor, over: StepOver<'_>) -> Result<Option<Tensor>> {
        let (rows, t, d) = x.dims3()?;
        if t != 1 || !x.device().is_cpu() {
            return Ok(None);
        }
        let scale = ((d / self.heads) as f64).powf(-0.5);
        let q = (self.q.forward(x)? * scale)?.reshape((rows, d))?;
        let o = match over {
            StepOver::Audio(kt, v) => super::step_attention::cross(&q, kt, v)?,
            StepOver::Cache(cache) => super::step_attention::cached(&q, cache, self.heads)?,
        };
        o.map(|o| self.out.forward(&o.reshape((rows, 1, d))?))
            .transpose()
    }

    /// `residual` + the self-attention of every position of `x` [B, T, D] over all of them
    /// (the encoder's): on [`crate::packed_attention`] for f32 on the CPU, through
    /// [`Attention::attend`] otherwise.
    fn over_itself(&self, x: &Tensor, residual: &Tensor) -> Result<Tensor> {
        let (b, t, d) = x.dims3()?;
        if !x.device().is_cpu() || x.dtype() != DType::F32 {
            let (k, v) = self.keys_values(x)?;
            return residual + self.attend(x, &k.t()?, &v, None)?;
        }
        let scale = ((d / self.heads) as f64).powf(-0.5);
        let q = (self.q.forward(x)? * scale)?.contiguous()?;
        let k = self.k.forward(x)?.contiguous()?;
        let v = self.v.forward(x)?.contiguous()?;
        let shape = crate::packed_attention::Shape {
            batch: b,
            len: t,
            heads: self.heads,
            head_dim: d / self.heads,
        };
        let o = with_f32(&q, |q| {
            with_f32(&k, |k| {
                with_f32(&v, |v| crate::packed_attention::attend(q, k, v, shape))
            })
        })?
        .transpose()?
        .flatten()
        .transpose()?
        .flatten();
        let Some(o) = o else {
            candle_core::bail!("encoder attention: the projections are not contiguous f32");
        };
        self.out
            .forward_onto(&Tensor::from_vec(o, (b, t, d), x.device())?, residual)
    }

    /// The same layer with its projections packed for the CPU kernels.
    fn packed(self) -> Result<Attention> {
        Ok(Attention {
            q: self.q.packed()?,
            k: self.k.packed()?,
            v: self.v.packed()?,
            out: self.out.packed()?,
            heads: self.heads,
        })
    }

    /// Attention of `x` over keys given transposed (`kt`: [B, H, D/H, T]) and values (split
    /// into heads); `mask` is added to the scores.
    fn attend(&self, x: &Tensor, kt: &Tensor, v: &Tensor, mask: Option<&Tensor>) -> Result<Tensor> {
        let (b, t, d) = x.dims3()?;
        let q = self.queries(x)?;
        // Queries in blocks: the encoder's 1500 at once would need 72 MB of scores per layer
        // for base, a fresh mapping (and its page faults) every layer.
        let blocks = (0..t)
            .step_by(QUERY_BLOCK)
            .map(|start| {
                let len = QUERY_BLOCK.min(t - start);
                let mut w = q.narrow(2, start, len)?.matmul(kt)?;
                if let Some(mask) = mask {
                    w = w.broadcast_add(&mask.narrow(0, start, len)?)?;
                }
                crate::vecmath::softmax_last_dim(&w)?.matmul(v)
            })
            .collect::<Result<Vec<_>>>()?;
        let o = Tensor::cat(&blocks, 2)?;
        self.out.forward(&o.transpose(1, 2)?.reshape((b, t, d))?)
    }
}

/// Queries per block in multi-token attention.
const QUERY_BLOCK: usize = 300;

#[derive(Debug)]
struct Mlp {
    norm: LayerNorm,
    fc1: Proj,
    fc2: Proj,
}

impl Mlp {
    fn load(vb: &VarBuilder, d: usize, half: bool) -> Result<Mlp> {
        let hidden = vb.pp("fc1").get_unchecked("weight")?.dim(0)?;
        Ok(Mlp {
            norm: candle_nn::layer_norm(d, 1e-5, vb.pp("final_layer_norm"))?,
            fc1: Proj::load(vb.pp("fc1"), (d, hidden), true, half)?,
            fc2: Proj::load(vb.pp("fc2"), (hidden, d), true, half)?,
        })
    }
    fn residual(&self, x: &Tensor) -> Result<Tensor> {
        let h = crate::vecmath::gelu_erf(&self.fc1.forward(&self.norm.forward(x)?)?)?;
        self.fc2.forward_onto(&h, x)
    }

    /// The same block with its projections packed for the CPU kernels.
    fn packed(self) -> Result<Mlp> {
        Ok(Mlp {
            norm: self.norm,
            fc1: self.fc1.packed()?,
            fc2: self.fc2.packed()?,
        })
    }
}

#[derive(Debug)]
struct EncoderLayer {
    norm: LayerNorm,
    attn: Attention,
    mlp: Mlp,
}

#[derive(Debug)]
pub struct Encoder {
    conv1: Conv1d,
    conv2: Conv1d,
    positions: Tensor,
    layers: Vec<EncoderLayer>,
    norm: LayerNorm,
}

impl Encoder {
    fn load(vb: VarBuilder, c: &WhisperConfig) -> Result<Encoder> {
        let d = c.d_model;
        let conv = |stride| Conv1dConfig {
            padding: 1,
            stride,
            ..Default::default()
        };
        let layers = (0..c.encoder_layers)
            .map(|i| {
                let vb = vb.pp(format!("layers.{i}"));
                Ok(EncoderLayer {
                    norm: candle_nn::layer_norm(d, 1e-5, vb.pp("self_attn_layer_norm"))?,
                    attn: Attention::load(vb.pp("self_attn"), d, c.encoder_attention_heads, false)?
                        .packed()?,
                    mlp: Mlp::load(&vb, d, false)?.packed()?,
                })
            })
            .collect::<Result<_>>()?;
        Ok(Encoder {
            conv1: candle_nn::conv1d(c.num_mel_bins, d, 3, conv(1), vb.pp("conv1"))?,
            conv2: candle_nn::conv1d(d, d, 3, conv(2), vb.pp("conv2"))?,
            positions: vb
                .pp("embed_positions")
                .get((c.max_source_positions, d), "weight")?,
            layers,
            norm: candle_nn::layer_norm(d, 1e-5, vb.pp("layer_norm"))?,
        })
    }

    /// Log-mel [B, n_mels, 3000] → audio features [B, 1500, D].
    pub fn forward(&self, mel: &Tensor) -> Result<Tensor> {
        let x = crate::vecmath::gelu_erf(&self.conv1.forward(mel)?)?;
        let x = crate::vecmath::gelu_erf(&self.conv2.forward(&x)?)?.transpose(1, 2)?;
        let t = x.dim(1)?;
        let mut x = x.broadcast_add(&self.positions.narrow(0, 0, t)?)?;
        for layer in &self.layers {
            let h = layer.norm.forward(&x)?;
            x = layer.attn.over_itself(&h, &x)?;
            x = layer.mlp.residual(&x)?;
        }
        self.norm.forward(&x)
    }
}

#[derive(Debug)]
struct DecoderLayer {
    self_norm: LayerNorm,
    self_attn: Attention,
    cross_norm: LayerNorm,
    cross_attn: Attention,
    mlp: Mlp,
}

/// The decoder's state for a batch of sequences over one batch of encoder outputs.
#[derive(Debug, Clone)]
pub struct DecoderState {
    self_kv: Vec<KvCache>,
    /// Cross-attention (keys transposed, values) per layer.
    cross_kv: Vec<(Tensor, Tensor)>,
    /// Tokens consumed so far (the next token's position).
    pub position: usize,
}

impl DecoderState {
    pub fn device(&self) -> &Device {
        self.cross_kv
            .first()
            .map_or(&Device::Cpu, |(k, _)| k.device())
    }

    /// Keeps the sequences `parents[i]`, in that order (beam search reordering). The
    /// cross-attention keys/values stay shared: every row decodes the same audio.
    pub fn select(&self, parents: &[usize]) -> Result<DecoderState> {
        Ok(DecoderState {
            self_kv: self
                .self_kv
                .iter()
                .map(|kv| kv.select(parents))
                .collect::<Result<_>>()?,
            cross_kv: self.cross_kv.clone(),
            position: self.position,
        })
    }
}

#[derive(Debug)]
pub struct Decoder {
    embed: Tensor,
    /// f16 copy of `embed` for the output projection when the checkpoint stores f16.
    embed_half: Option<Tensor>,
    positions: Tensor,
    layers: Vec<DecoderLayer>,
    norm: LayerNorm,
    max_positions: usize,
}

impl Decoder {
    fn load(vb: VarBuilder, c: &WhisperConfig, half: bool) -> Result<Decoder> {
        let d = c.d_model;
        let layers = (0..c.decoder_layers)
            .map(|i| {
                let vb = vb.pp(format!("layers.{i}"));
                let heads = c.decoder_attention_heads;
                Ok(DecoderLayer {
                    self_norm: candle_nn::layer_norm(d, 1e-5, vb.pp("self_attn_layer_norm"))?,
                    self_attn: Attention::load(vb.pp("self_attn"), d, heads, half)?,
                    cross_norm: candle_nn::layer_norm(d, 1e-5, vb.pp("encoder_attn_layer_norm"))?,
                    cross_attn: Attention::load(vb.pp("encoder_attn"), d, heads, half)?,
                    mlp: Mlp::load(&vb, d, half)?,
                })
            })
            .collect::<Result<_>>()?;
        let embed_half = if half {
            Some(
                vb.pp("embed_tokens")
                    .get_unchecked_dtype("weight", DType::F16)?,
            )
        } else {
            None
        };
        Ok(Decoder {
            embed: vb.pp("embed_tokens").get((c.vocab_size, d), "weight")?,
            embed_half,
            positions: vb
                .pp("embed_positions")
                .get((c.max_target_positions, d), "weight")?,
            layers,
            norm: candle_nn::layer_norm(d, 1e-5, vb.pp("layer_norm"))?,
            max_positions: c.max_target_positions,
        })
    }

    /// A fresh state over encoder outputs `audio` [B, 1500, D].
    pub fn start(&self, audio: &Tensor) -> Result<DecoderState> {
        Ok(DecoderState {
            self_kv: vec![KvCache::default(); self.layers.len()],
            cross_kv: self
                .layers
                .iter()
                .map(|l| {
                    // Keys stored transposed once per window: every step multiplies by them.
                    let (k, v) = l.cross_attn.keys_values(audio)?;
                    Ok((k.t()?.contiguous()?, v))
                })
                .collect::<Result<_>>()?,
            position: 0,
        })
    }

    /// Runs `tokens` [B, T] from the state's position; returns the final hidden states [B, T, D].
    pub fn forward(&self, tokens: &Tensor, state: &mut DecoderState) -> Result<Tensor> {
        Ok(self.forward_capturing(tokens, state, &[])?.0)
    }

    /// [`Decoder::forward`], also returning the cross-attention scores (before the softmax)
    /// of the (layer, head) pairs in `heads` for the first sequence: [T, audio frames] each.
    pub fn forward_capturing(
        &self,
        tokens: &Tensor,
        state: &mut DecoderState,
        heads: &[(usize, usize)],
    ) -> Result<(Tensor, Vec<Tensor>)> {
        let mut captured = Vec::with_capacity(heads.len());
        let (_, t) = tokens.dims2()?;
        let start = state.position;
        if start + t > self.max_positions {
            candle_core::bail!("decoder context is full ({} positions)", self.max_positions);
        }
        let mut x = self
            .embed
            .embedding(&tokens.flatten_all()?)?
            .reshape((tokens.dim(0)?, t, ()))?
            .broadcast_add(&self.positions.narrow(0, start, t)?)?;
        let mask = if t > 1 {
            Some(causal_mask(start, t, x.device())?)
        } else {
            None
        };
        for (index, ((layer, cache), (ck, cv))) in self
            .layers
            .iter()
            .zip(state.self_kv.iter_mut())
            .zip(&state.cross_kv)
            .enumerate()
        {
            let h = layer.self_norm.forward(&x)?;
            let attn = &layer.self_attn;
            let (k, v) = (attn.k.forward(&h)?, attn.v.forward(&h)?);
            let was_empty = cache.is_empty();
            cache.append(&k, &v)?;
            let attended = match attn.step(&h, StepOver::Cache(cache))? {
                Some(a) => a,
                None => {
                    let (k, v) = if was_empty {
                        (k, v)
                    } else {
                        cache.tensors(h.device())?
                    };
                    let (k, v) = (attn.split(&k)?, attn.split(&v)?);
                    attn.attend(&h, &k.t()?, &v, mask.as_ref())?
                }
            };
            x = (&x + attended)?;
            let h = layer.cross_norm.forward(&x)?;
            if heads.iter().any(|&(l, _)| l == index) {
                let scores = layer.cross_attn.scores(&h, ck)?.get(0)?;
                for &(_, head) in heads.iter().filter(|&&(l, _)| l == index) {
                    captured.push(scores.get(head)?);
                }
            }
            let (rows, steps, d) = h.dims3()?;
            let stepped = if ck.dim(0)? == 1 {
                layer.cross_attn.step(&h, StepOver::Audio(ck, cv))?
            } else {
                None
            };
            let cross = if let Some(c) = stepped {
                c
            } else if rows > 1 && ck.dim(0)? == 1 && steps == 1 {
                // Several hypotheses over one audio: attend as one row of `rows` queries.
                let out = layer
                    .cross_attn
                    .attend(&h.reshape((1, rows, d))?, ck, cv, None)?;
                out.reshape((rows, 1, d))?
            } else {
                layer.cross_attn.attend(&h, ck, cv, None)?
            };
            x = (&x + cross)?;
            x = layer.mlp.residual(&x)?;
        }
        state.position = start + t;
        Ok((x, captured))
    }

    /// Logits [B, T, vocab] of hidden states [B, T, D].
    pub fn logits(&self, hidden: &Tensor) -> Result<Tensor> {
        self.norm
            .forward(hidden)?
            .broadcast_matmul(&self.embed.t()?)
    }

    /// Logits [B, vocab] of the hidden state at position `index` of `hidden` [B, T, D].
    pub fn logits_at(&self, hidden: &Tensor, index: usize) -> Result<Tensor> {
        let h = self
            .norm
            .forward(&hidden.narrow(1, index, 1)?)?
            .squeeze(1)?;
        let weight = self.embed_half.as_ref().unwrap_or(&self.embed);
        match super::gemv::rows_times_transposed(&h, weight, None)? {
            Some(logits) => Ok(logits),
            None => h.matmul(&self.embed.t()?),
        }
    }
}

fn causal_mask(start: usize, t: usize, device: &Device) -> Result<Tensor> {
    let total = start + t;
    let mask: Vec<f32> = (0..t)
        .flat_map(|i| {
            (0..total).map(move |j| {
                if j > start + i {
                    f32::NEG_INFINITY
                } else {
                    0.0
                }
            })
        })
        .collect();
    Tensor::from_vec(mask, (t, total), device)
}

/// Whisper: encoder, decoder, dimensions.
#[derive(Debug)]
pub struct Whisper {
    pub encoder: Encoder,
    pub decoder: Decoder,
    pub config: WhisperConfig,
}

impl Whisper {
    /// Loads the model; `half_weights`: the checkpoint stores f16, so decoder steps may read
    /// f16 copies of the decoder's weights (the same values).
    pub fn load(vb: VarBuilder, config: WhisperConfig, half_weights: bool) -> Result<Whisper> {
        let vb = vb.pp("model");
        Ok(Whisper {
            encoder: Encoder::load(vb.pp("encoder"), &config)?,
            decoder: Decoder::load(vb.pp("decoder"), &config, half_weights)?,
            config,
        })
    }

    pub fn dtype(&self) -> DType {
        self.decoder.embed.dtype()
    }
}
