//! CLIP's vision tower on the CPU in f32: patch embedding as one product per image, the class
//! token and positions, the pre-norm, [`crate::transformer_cpu`]'s fused encoder (norm before
//! each block, quick GELU), then the class token's post-norm and the visual projection.
//! The same computation as candle-transformers' `ClipVisionTransformer` + `visual_projection`
//! (Hugging Face's parameter names); other devices and dtypes run that one.

use candle_core::{Result, Tensor};
use candle_nn::VarBuilder;
use candle_transformers::models::clip::vision_model::ClipVisionConfig;

use crate::transformer_cpu::{self, Act, Dense, Encoder, Layer, Norm, NormAt};

/// LayerNorm epsilon of CLIP's vision tower (fixed in Hugging Face's and candle's code).
const EPS: f32 = 1e-5;

pub(crate) struct ClipVisionCpu {
    /// The patch convolution as a product: weight [D, C·P·P] (its (c, y, x) order), no bias.
    patch: Dense,
    /// [D]
    class: Vec<f32>,
    /// [patches + 1, D]
    positions: Vec<f32>,
    pre_norm: Norm,
    encoder: Encoder,
    post_norm: Norm,
    /// [projection, D], no bias.
    projection: Dense,
    channels: usize,
    image_size: usize,
    patch_size: usize,
}

impl ClipVisionCpu {
    /// From the checkpoint's root (`vision_model.*`, `visual_projection.weight`).
    pub fn load(vb: &VarBuilder, c: &ClipVisionConfig) -> Result<ClipVisionCpu> {
        let d = c.embed_dim;
        if c.num_attention_heads == 0 || !d.is_multiple_of(c.num_attention_heads) {
            candle_core::bail!(
                "{d} features do not split into {} heads",
                c.num_attention_heads
            );
        }
        if c.patch_size == 0 || !c.image_size.is_multiple_of(c.patch_size) {
            candle_core::bail!(
                "image size {} is not whole patches of {}",
                c.image_size,
                c.patch_size
            );
        }
        let v = vb.pp("vision_model");
        let emb = v.pp("embeddings");
        let side = c.image_size / c.patch_size;
        let depth = c.num_channels * c.patch_size * c.patch_size;
        let patch_w = emb
            .pp("patch_embedding")
            .get((d, c.num_channels, c.patch_size, c.patch_size), "weight")?;
        if !emb.contains_tensor("class_embedding") {
            candle_core::bail!("the checkpoint has no vision_model.embeddings.class_embedding");
        }
        let layers = (0..c.num_hidden_layers)
            .map(|i| {
                let l = v.pp(format!("encoder.layers.{i}"));
                let att = l.pp("self_attn");
                let part = |name: &str| -> Result<(Tensor, Tensor)> {
                    let p = att.pp(name);
                    Ok((p.get((d, d), "weight")?, p.get(d, "bias")?))
                };
                let (q, k, v) = (part("q_proj")?, part("k_proj")?, part("v_proj")?);
                Ok(Layer {
                    qkv: Dense::new(
                        &Tensor::cat(&[&q.0, &k.0, &v.0], 0)?,
                        Some(&Tensor::cat(&[&q.1, &k.1, &v.1], 0)?),
                    )?,
                    out: Dense::load(att.pp("out_proj"), d, d, true)?,
                    attn_norm: Norm::load(l.pp("layer_norm1"), d, EPS)?,
                    up: Dense::load(l.pp("mlp").pp("fc1"), c.intermediate_size, d, true)?,
                    down: Dense::load(l.pp("mlp").pp("fc2"), d, c.intermediate_size, true)?,
                    out_norm: Norm::load(l.pp("layer_norm2"), d, EPS)?,
                })
            })
            .collect::<Result<_>>()?;
        Ok(ClipVisionCpu {
            patch: Dense::new(&patch_w.reshape((d, depth))?, None)?,
            class: transformer_cpu::values(&emb.get(d, "class_embedding")?)?,
            positions: transformer_cpu::values(
                &emb.pp("position_embedding")
                    .get((side * side + 1, d), "weight")?,
            )?,
            pre_norm: Norm::load(v.pp("pre_layrnorm"), d, EPS)?,
            encoder: Encoder {
                layers,
                dims: d,
                heads: c.num_attention_heads,
                act: Act::QuickGelu,
                norm_at: NormAt::Before,
            },
            post_norm: Norm::load(v.pp("post_layernorm"), d, EPS)?,
            projection: Dense::load(vb.pp("visual_projection"), c.projection_dim, d, false)?,
            channels: c.num_channels,
            image_size: c.image_size,
            patch_size: c.patch_size,
        })
    }

    fn patches(&self) -> usize {
        (self.image_size / self.patch_size).pow(2)
    }

    /// Image features [N, projection] (not normalised) of `n` preprocessed images, CHW each,
    /// back to back.
    pub fn features(&self, pixels: &[f32], n: usize) -> Vec<Vec<f32>> {
        let tokens = self.patches() + 1;
        let plane = self.channels * self.image_size * self.image_size;
        assert_eq!(pixels.len(), n * plane, "pixel count");
        let lens = vec![tokens; n];
        transformer_cpu::groups(&lens, |(i0, i1), par| {
            let mut x = self.embed(&pixels[i0 * plane..i1 * plane], i1 - i0, par);
            self.encoder.run(&mut x, &lens[i0..i1], par);
            x.chunks_exact(tokens * self.encoder.dims)
                .map(|image| {
                    let mut cls = image[..self.encoder.dims].to_vec();
                    self.post_norm.apply(&mut cls);
                    let mut out = vec![0f32; self.projection.outputs];
                    self.projection.forward_into(&cls, &mut out, par);
                    out
                })
                .collect::<Vec<_>>()
        })
        .into_iter()
        .flatten()
        .collect()
    }

    /// Class token and patch embeddings plus positions, pre-normed: [n·(patches + 1), D].
    fn embed(&self, pixels: &[f32], n: usize, par: gemm::Parallelism) -> Vec<f32> {
        let d = self.encoder.dims;
        let (s, p, c) = (self.image_size, self.patch_size, self.channels);
        let side = s / p;
        let tokens = side * side + 1;
        let mut x = vec![0f32; n * tokens * d];
        let mut cols = vec![0f32; side * side * self.patch.inputs];
        for (image, rows) in pixels
            .chunks_exact(c * s * s)
            .zip(x.chunks_exact_mut(tokens * d))
        {
            // Each patch's pixels in the weight's (channel, y, x) order.
            for (j, col) in cols.chunks_exact_mut(self.patch.inputs).enumerate() {
                let (py, px) = (j / side, j % side);
                for ch in 0..c {
                    for y in 0..p {
                        let src = &image[ch * s * s + (py * p + y) * s + px * p..][..p];
                        col[(ch * p + y) * p..][..p].copy_from_slice(src);
                    }
                }
            }
            rows.copy_from_slice(&self.positions);
            for (v, cl) in rows[..d].iter_mut().zip(&self.class) {
                *v += cl;
            }
            self.patch.add_to(&cols, &mut rows[d..], par);
        }
        self.pre_norm.apply(&mut x);
        x
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use candle_core::{DType, Device, Tensor};
    use candle_nn::{VarBuilder, VarMap};
    use candle_transformers::models::clip::ClipModel;

    use super::*;
    use crate::clip::HfClipConfig;

    /// The fused tower gives candle-transformers' image features, for one image (products
    /// split over the pool) and for a batch (one group of images per thread), with every
    /// parameter random (LayerNorm gains and biases included).
    #[test]
    fn fused_cpu_tower_matches_candles_clip() -> Result<()> {
        let dev = Device::Cpu;
        let hf: HfClipConfig = serde_json::from_value(serde_json::json!({
            "projection_dim": 24,
            "text_config": { "vocab_size": 10, "hidden_size": 16, "intermediate_size": 32,
                "num_hidden_layers": 1, "num_attention_heads": 2, "max_position_embeddings": 8 },
            "vision_config": { "hidden_size": 48, "intermediate_size": 96,
                "num_hidden_layers": 2, "num_attention_heads": 4, "image_size": 32,
                "patch_size": 8, "num_channels": 3 }
        }))
        .map_err(candle_core::Error::wrap)?;
        let c = hf.to_candle("test").map_err(candle_core::Error::wrap)?;
        let varmap = VarMap::new();
        let vb = VarBuilder::from_varmap(&varmap, DType::F32, &dev);
        vb.pp("vision_model")
            .pp("embeddings")
            .get(48, "class_embedding")?;
        ClipModel::new(vb, &c)?;
        let tensors: HashMap<String, Tensor> = varmap
            .data()
            .lock()
            .expect("varmap lock")
            .iter()
            .map(|(name, var)| Ok((name.clone(), var.as_tensor().randn_like(0.0, 0.3)?)))
            .collect::<Result<_>>()?;
        let vb = VarBuilder::from_tensors(tensors, DType::F32, &dev);
        let candle = ClipModel::new(vb.clone(), &c)?;
        let cpu = ClipVisionCpu::load(&vb, &c.vision_config)?;
        for n in [1, 3] {
            let x = Tensor::randn(0f32, 1.0, (n, 3, 32, 32), &dev)?;
            let want = candle.get_image_features(&x)?.to_vec2::<f32>()?;
            let got = cpu.features(&x.flatten_all()?.to_vec1::<f32>()?, n);
            assert_eq!(got.len(), n);
            for (w, g) in want.iter().zip(&got) {
                for (a, b) in w.iter().zip(g) {
                    assert!(
                        (a - b).abs() < 1e-4 * a.abs().max(1.0),
                        "batch {n}: {a} vs {b}"
                    );
                }
            }
        }
        Ok(())
    }
}
