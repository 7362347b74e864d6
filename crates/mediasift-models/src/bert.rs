//! A BERT encoder (sentence-transformers' MiniLM) for inference, with Hugging Face parameter
//! names. f32 on the CPU runs [`crate::bert_cpu`] (fused, one group of sentences per thread);
//! other devices and dtypes run the same graph through candle's ops.

use candle_core::{D, DType, Module, Tensor};
use candle_nn::{Embedding, LayerNorm, Linear, VarBuilder};
use candle_transformers::models::bert::{Config, HiddenAct};

use crate::bert_cpu::CpuBert;
use crate::transformer_cpu::{self, Act, Dense, Encoder, Norm, NormAt};

type Result<T> = candle_core::Result<T>;

/// One encoder layer's parameters as loaded.
struct LayerTensors {
    /// Query, key and value stacked: weight [3·D, D], bias [3·D].
    qkv: (Tensor, Tensor),
    out: (Tensor, Tensor),
    attn_norm: (Tensor, Tensor),
    up: (Tensor, Tensor),
    down: (Tensor, Tensor),
    out_norm: (Tensor, Tensor),
}

struct Layer {
    qkv: Linear,
    out: Linear,
    attn_norm: LayerNorm,
    up: Linear,
    down: Linear,
    out_norm: LayerNorm,
}

/// The graph through candle's ops.
struct CandleBert {
    words: Embedding,
    positions: Embedding,
    token_types: Embedding,
    embed_norm: LayerNorm,
    layers: Vec<Layer>,
    heads: usize,
    act: HiddenAct,
}

enum Engine {
    Cpu(CpuBert),
    Candle(CandleBert),
}

fn linear((w, b): &(Tensor, Tensor)) -> Linear {
    Linear::new(w.clone(), Some(b.clone()))
}

fn layer_norm((g, b): &(Tensor, Tensor), eps: f64) -> LayerNorm {
    LayerNorm::new(g.clone(), b.clone(), eps)
}

impl LayerTensors {
    fn cpu(&self, eps: f64) -> Result<transformer_cpu::Layer> {
        let dense = |(w, b): &(Tensor, Tensor)| Dense::new(w, Some(b));
        let norm = |(g, b): &(Tensor, Tensor)| Norm::new(g, b, eps as f32);
        Ok(transformer_cpu::Layer {
            qkv: dense(&self.qkv)?,
            out: dense(&self.out)?,
            attn_norm: norm(&self.attn_norm)?,
            up: dense(&self.up)?,
            down: dense(&self.down)?,
            out_norm: norm(&self.out_norm)?,
        })
    }

    fn candle(&self, eps: f64) -> Layer {
        Layer {
            qkv: linear(&self.qkv),
            out: linear(&self.out),
            attn_norm: layer_norm(&self.attn_norm, eps),
            up: linear(&self.up),
            down: linear(&self.down),
            out_norm: layer_norm(&self.out_norm, eps),
        }
    }
}

/// BERT's embeddings and encoder layers (no pooler: sentence embeddings mean-pool the tokens).
pub struct Bert {
    engine: Engine,
}

impl std::fmt::Debug for Bert {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bert")
            .field("fused_cpu", &matches!(self.engine, Engine::Cpu(_)))
            .finish_non_exhaustive()
    }
}

impl Bert {
    /// Loads the fused CPU engine for f32 on the CPU, candle's graph otherwise.
    pub fn load(vb: VarBuilder, c: &Config) -> Result<Bert> {
        let cpu = vb.device().is_cpu() && vb.dtype() == DType::F32;
        Self::load_engine(vb, c, cpu)
    }

    fn load_engine(vb: VarBuilder, c: &Config, cpu: bool) -> Result<Bert> {
        let vb = if vb.contains_tensor("bert.embeddings.word_embeddings.weight") {
            vb.pp("bert")
        } else {
            vb
        };
        let d = c.hidden_size;
        if c.num_attention_heads == 0 || !d.is_multiple_of(c.num_attention_heads) {
            candle_core::bail!(
                "{d} features do not split into {} heads",
                c.num_attention_heads
            );
        }
        let pair = |vb: VarBuilder, out: usize, inp: Option<usize>| -> Result<(Tensor, Tensor)> {
            let w = match inp {
                Some(i) => vb.get((out, i), "weight")?,
                None => vb.get(out, "weight")?,
            };
            Ok((w, vb.get(out, "bias")?))
        };
        let layers = (0..c.num_hidden_layers)
            .map(|i| {
                let vb = vb.pp(format!("encoder.layer.{i}"));
                let att = vb.pp("attention");
                let part = |name: &str| pair(att.pp("self").pp(name), d, Some(d));
                let (q, k, v) = (part("query")?, part("key")?, part("value")?);
                Ok(LayerTensors {
                    qkv: (
                        Tensor::cat(&[&q.0, &k.0, &v.0], 0)?,
                        Tensor::cat(&[&q.1, &k.1, &v.1], 0)?,
                    ),
                    out: pair(att.pp("output").pp("dense"), d, Some(d))?,
                    attn_norm: pair(att.pp("output").pp("LayerNorm"), d, None)?,
                    up: pair(
                        vb.pp("intermediate").pp("dense"),
                        c.intermediate_size,
                        Some(d),
                    )?,
                    down: pair(vb.pp("output").pp("dense"), d, Some(c.intermediate_size))?,
                    out_norm: pair(vb.pp("output").pp("LayerNorm"), d, None)?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let emb = vb.pp("embeddings");
        let words = emb.pp("word_embeddings").get((c.vocab_size, d), "weight")?;
        let positions = emb
            .pp("position_embeddings")
            .get((c.max_position_embeddings, d), "weight")?;
        let token_types = emb
            .pp("token_type_embeddings")
            .get((c.type_vocab_size, d), "weight")?;
        let embed_norm = pair(emb.pp("LayerNorm"), d, None)?;
        let eps = c.layer_norm_eps;
        let engine = if cpu {
            Engine::Cpu(CpuBert {
                words: transformer_cpu::values(&words)?,
                positions: transformer_cpu::values(&positions)?,
                token_type: transformer_cpu::values(&token_types.get(0)?)?,
                embed_norm: Norm::new(&embed_norm.0, &embed_norm.1, eps as f32)?,
                encoder: Encoder {
                    layers: layers.iter().map(|l| l.cpu(eps)).collect::<Result<_>>()?,
                    dims: d,
                    heads: c.num_attention_heads,
                    act: match c.hidden_act {
                        HiddenAct::Gelu => Act::Gelu,
                        HiddenAct::GeluApproximate => Act::GeluTanh,
                        HiddenAct::Relu => Act::Relu,
                    },
                    norm_at: NormAt::After,
                },
            })
        } else {
            Engine::Candle(CandleBert {
                words: Embedding::new(words, d),
                positions: Embedding::new(positions, d),
                token_types: Embedding::new(token_types, d),
                embed_norm: layer_norm(&embed_norm, eps),
                layers: layers.iter().map(|l| l.candle(eps)).collect(),
                heads: c.num_attention_heads,
                act: c.hidden_act,
            })
        };
        Ok(Bert { engine })
    }

    /// Hidden states [B, T, D] of token ids [B, T] (token type 0) with `mask` [B, T] (1 for
    /// real tokens, 0 for padding). The fused CPU engine leaves padding positions at zero
    /// (real tokens never attend to them, so their states are the same).
    pub fn forward(&self, ids: &Tensor, mask: &Tensor) -> Result<Tensor> {
        let (b, t) = ids.dims2()?;
        let keep: Vec<u32> = mask.flatten_all()?.to_dtype(DType::U32)?.to_vec1()?;
        match &self.engine {
            Engine::Candle(m) => m.forward(ids, &keep),
            Engine::Cpu(m) => {
                let limit = m.positions.len() / m.dims().max(1);
                if t > limit {
                    candle_core::bail!("{t} tokens exceed the model's {limit} positions");
                }
                let ids: Vec<u32> = ids.flatten_all()?.to_dtype(DType::U32)?.to_vec1()?;
                let vocab = m.words.len() / m.dims().max(1);
                if let Some(bad) = ids.iter().find(|&&i| i as usize >= vocab) {
                    candle_core::bail!("token id {bad} outside the vocabulary of {vocab}");
                }
                let out = m.forward(&ids, &keep, (b, t));
                Tensor::from_vec(out, (b, t, m.dims()), mask.device())
            }
        }
    }
}

impl CandleBert {
    fn forward(&self, ids: &Tensor, keep: &[u32]) -> Result<Tensor> {
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
        for layer in &self.layers {
            let qkv = layer.qkv.forward(&x)?;
            let context = self.attention(&qkv, keep, (b, t))?;
            x = layer
                .attn_norm
                .forward(&(layer.out.forward(&context)? + &x)?)?;
            let up = layer.up.forward(&x)?;
            let up = match self.act {
                HiddenAct::Gelu => up.gelu_erf()?,
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
        let split = |which: usize| -> Result<Tensor> {
            qkv.narrow(1, which * d, d)?
                .reshape((b, t, h, dh))?
                .transpose(1, 2)?
                .contiguous()
        };
        let (q, k, v) = (split(0)?, split(1)?, split(2)?);
        // As Hugging Face's mask: the lowest finite value, so a row with no real token is
        // uniform rather than NaN.
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
    use std::collections::HashMap;

    use super::*;
    use candle_core::Device;

    /// A random 2-layer BERT in Hugging Face's names, loaded by both engines: (candle, fused).
    fn random_berts() -> Result<(Bert, Bert)> {
        let dev = Device::Cpu;
        let (d, inter, vocab, pos) = (12, 20, 30, 16);
        let config: Config = serde_json::from_value(serde_json::json!({
            "vocab_size": vocab, "hidden_size": d, "num_hidden_layers": 2,
            "num_attention_heads": 3, "intermediate_size": inter, "hidden_act": "gelu",
            "hidden_dropout_prob": 0.0, "max_position_embeddings": pos, "type_vocab_size": 2,
            "initializer_range": 0.02, "layer_norm_eps": 1e-12, "pad_token_id": 0,
            "position_embedding_type": "absolute", "use_cache": false,
            "classifier_dropout": null, "model_type": "bert"
        }))
        .map_err(candle_core::Error::wrap)?;
        let mut t = HashMap::new();
        let mut add = |name: String, shape: &[usize]| -> Result<()> {
            t.insert(name, Tensor::randn(0f32, 0.5, shape, &dev)?);
            Ok(())
        };
        add("embeddings.word_embeddings.weight".into(), &[vocab, d])?;
        add("embeddings.position_embeddings.weight".into(), &[pos, d])?;
        add("embeddings.token_type_embeddings.weight".into(), &[2, d])?;
        for n in ["weight", "bias"] {
            add(format!("embeddings.LayerNorm.{n}"), &[d])?;
        }
        for l in 0..2 {
            let p = format!("encoder.layer.{l}");
            for (name, out, inp) in [
                ("attention.self.query", d, d),
                ("attention.self.key", d, d),
                ("attention.self.value", d, d),
                ("attention.output.dense", d, d),
                ("intermediate.dense", inter, d),
                ("output.dense", d, inter),
            ] {
                add(format!("{p}.{name}.weight"), &[out, inp])?;
                add(format!("{p}.{name}.bias"), &[out])?;
            }
            for name in ["attention.output.LayerNorm", "output.LayerNorm"] {
                add(format!("{p}.{name}.weight"), &[d])?;
                add(format!("{p}.{name}.bias"), &[d])?;
            }
        }
        let load = |cpu| {
            Bert::load_engine(
                VarBuilder::from_tensors(t.clone(), DType::F32, &dev),
                &config,
                cpu,
            )
        };
        Ok((load(false)?, load(true)?))
    }

    /// The fused CPU engine gives candle's graph's states at every real token, for sentences
    /// with and without padding, in one group (batch 1) and in several (a batch of 5 over the
    /// pool).
    #[test]
    fn fused_cpu_engine_matches_the_candle_graph() -> Result<()> {
        let (candle, cpu) = random_berts()?;
        assert!(matches!(cpu.engine, Engine::Cpu(_)));
        let dev = Device::Cpu;
        let t = 7;
        let lens = [7usize, 3, 5, 1, 6];
        for b in [1, lens.len()] {
            let ids: Vec<u32> = (0..b * t).map(|i| (i * 7 % 29 + 1) as u32).collect();
            let keep: Vec<u32> = (0..b * t).map(|i| u32::from(i % t < lens[i / t])).collect();
            let ids = Tensor::from_vec(ids, (b, t), &dev)?;
            let mask = Tensor::from_vec(keep.clone(), (b, t), &dev)?;
            let want = candle
                .forward(&ids, &mask)?
                .flatten_to(1)?
                .to_vec2::<f32>()?;
            let got = cpu.forward(&ids, &mask)?.flatten_to(1)?.to_vec2::<f32>()?;
            for (i, (w, g)) in want.iter().zip(&got).enumerate() {
                if keep[i] == 0 {
                    assert!(g.iter().all(|&v| v == 0.0), "padding state {i} not zero");
                    continue;
                }
                let diff = w
                    .iter()
                    .zip(g)
                    .map(|(a, b)| (a - b).abs())
                    .fold(0f32, f32::max);
                assert!(diff < 1e-4, "batch {b}, token {i}: {diff}");
            }
        }
        Ok(())
    }
}
