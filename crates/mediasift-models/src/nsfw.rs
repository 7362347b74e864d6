//! Yahoo's open_nsfw (<https://github.com/yahoo/open_nsfw>): a ResNet-50 with half the channels
//! ("resnet_50_1by2"), batch norms already folded into the convolutions, scoring [sfw, nsfw].
//! The weights come from the `open-nsfw.onnx` export; [`convert_onnx`] renames its initializers
//! to this port's layout by following the graph (each Conv's output names its layer).

use std::collections::HashMap;
use std::path::Path;

use candle_core::{D, DType, Device, Module, Tensor};
use candle_nn::VarBuilder;

use crate::conv::{Activation, FastConv};

use crate::{ModelError, Provenance, ResolvedModel};

/// (blocks, bottleneck channels, output channels, stride of the first block)
const STAGES: [(usize, usize, usize, usize); 4] = [
    (3, 32, 128, 1),
    (4, 64, 256, 2),
    (6, 128, 512, 2),
    (3, 256, 1024, 2),
];
/// Caffe's ImageNet mean in BGR order.
const MEAN_BGR: [f32; 3] = [104.0, 117.0, 123.0];
pub const INPUT_SIZE: u32 = 224;
const RESIZE: u32 = 256;

fn conv(
    vb: VarBuilder,
    cin: usize,
    cout: usize,
    k: usize,
    stride: usize,
    padding: usize,
    activation: Activation,
) -> candle_core::Result<FastConv> {
    let w = vb.get((cout, cin, k, k), "weight")?;
    let b = vb.get(cout, "bias")?;
    Ok(FastConv::new(w, b, stride, padding, 1)?.with_activation(activation))
}

#[derive(Debug)]
struct Bottleneck {
    a: FastConv,
    b: FastConv,
    c: FastConv,
    proj: Option<FastConv>,
}

impl Bottleneck {
    fn new(
        vb: VarBuilder,
        cin: usize,
        mid: usize,
        cout: usize,
        stride: usize,
        first: bool,
    ) -> candle_core::Result<Bottleneck> {
        Ok(Bottleneck {
            // Caffe-style: the stride sits on the first 1x1 convolution.
            a: conv(vb.pp("branch2a"), cin, mid, 1, stride, 0, Activation::Relu)?,
            b: conv(vb.pp("branch2b"), mid, mid, 3, 1, 1, Activation::Relu)?,
            c: conv(vb.pp("branch2c"), mid, cout, 1, 1, 0, Activation::None)?,
            proj: if first {
                Some(conv(
                    vb.pp("proj"),
                    cin,
                    cout,
                    1,
                    stride,
                    0,
                    Activation::None,
                )?)
            } else {
                None
            },
        })
    }

    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let y = self.c.forward(&self.b.forward(&self.a.forward(x)?)?)?;
        let shortcut = match &self.proj {
            Some(p) => p.forward(x)?,
            None => x.clone(),
        };
        (y + shortcut)?.relu()
    }
}

/// The open_nsfw network.
#[derive(Debug)]
pub struct OpenNsfw {
    conv1: FastConv,
    blocks: Vec<Bottleneck>,
    fc_w: Tensor,
    fc_b: Tensor,
    device: Device,
    provenance: Provenance,
}

impl OpenNsfw {
    pub fn load(model: &ResolvedModel, device: &Device) -> Result<OpenNsfw, ModelError> {
        let id = model.id.as_str();
        let tensors = candle_core::safetensors::load(model.dir.join("model.safetensors"), device)
            .map_err(|e| ModelError::load(id, e))?;
        let vb = VarBuilder::from_tensors(tensors, DType::F32, device);
        let build = || -> candle_core::Result<(FastConv, Vec<Bottleneck>, Tensor, Tensor)> {
            let conv1 = conv(vb.pp("conv1"), 3, 64, 7, 2, 3, Activation::Relu)?;
            let mut blocks = Vec::new();
            let mut cin = 64;
            for (s, (n, mid, cout, stride)) in STAGES.into_iter().enumerate() {
                for b in 0..n {
                    let vb = vb.pp(format!("stage{s}")).pp(format!("block{b}"));
                    blocks.push(Bottleneck::new(
                        vb,
                        cin,
                        mid,
                        cout,
                        if b == 0 { stride } else { 1 },
                        b == 0,
                    )?);
                    cin = cout;
                }
            }
            Ok((
                conv1,
                blocks,
                vb.pp("fc").get((2, 1024), "weight")?,
                vb.pp("fc").get(2, "bias")?,
            ))
        };
        let (conv1, blocks, fc_w, fc_b) = build().map_err(|e| ModelError::load(id, e))?;
        Ok(OpenNsfw {
            conv1,
            blocks,
            fc_w,
            fc_b,
            device: device.clone(),
            provenance: Provenance::of(model, device),
        })
    }

    pub fn provenance(&self) -> &Provenance {
        &self.provenance
    }

    /// NSFW probabilities of a batch of `3×224×224` inputs from [`preprocess`].
    pub fn scores(&self, inputs: &[Vec<f32>]) -> Result<Vec<f32>, ModelError> {
        let err = |e: candle_core::Error| ModelError::inference(&self.provenance.id, e);
        if inputs.is_empty() {
            return Ok(Vec::new());
        }
        let side = INPUT_SIZE as usize;
        let flat: Vec<f32> = inputs.iter().flatten().copied().collect();
        let run = || -> candle_core::Result<Vec<Vec<f32>>> {
            let x = Tensor::from_vec(flat, (inputs.len(), 3, side, side), &self.device)?;
            let x = self.conv1.forward(&x)?;
            // TF "SAME" max pool: 3x3, stride 2, one extra row and column at the bottom/right.
            let x = x
                .pad_with_same(D::Minus1, 0, 1)?
                .pad_with_same(D::Minus2, 0, 1)?
                .max_pool2d_with_stride(3, 2)?;
            let mut x = x;
            for b in &self.blocks {
                x = b.forward(&x)?;
            }
            let pooled = x.mean(D::Minus1)?.mean(D::Minus1)?;
            let logits = pooled.matmul(&self.fc_w.t()?)?.broadcast_add(&self.fc_b)?;
            candle_nn::ops::softmax(&logits, D::Minus1)?.to_vec2::<f32>()
        };
        Ok(run().map_err(err)?.into_iter().map(|p| p[1]).collect())
    }
}

/// open_nsfw's reference preprocessing: resize to 256×256 (bilinear, aspect ignored), centre crop
/// 224, a JPEG round trip (the model was trained on JPEG-decoded inputs), BGR minus the mean; CHW.
pub fn preprocess(rgb: &image::RgbImage) -> Vec<f32> {
    let resized =
        image::imageops::resize(rgb, RESIZE, RESIZE, image::imageops::FilterType::Triangle);
    let off = (RESIZE - INPUT_SIZE) / 2;
    let crop = image::imageops::crop_imm(&resized, off, off, INPUT_SIZE, INPUT_SIZE).to_image();
    let mut jpeg = Vec::new();
    let round_trip = image::codecs::jpeg::JpegEncoder::new_with_quality(&mut jpeg, 75)
        .encode_image(&crop)
        .ok()
        .and_then(|()| image::load_from_memory_with_format(&jpeg, image::ImageFormat::Jpeg).ok())
        .map(|i| i.into_rgb8());
    normalise(&round_trip.unwrap_or(crop))
}

/// A 224×224 RGB image to the network input: BGR channel order minus the mean, CHW.
pub fn normalise(img: &image::RgbImage) -> Vec<f32> {
    let side = INPUT_SIZE as usize;
    let mut out = vec![0f32; 3 * side * side];
    for (x, y, p) in img.enumerate_pixels() {
        for c in 0..3 {
            // Output channel c is BGR: blue first.
            out[c * side * side + y as usize * side + x as usize] =
                f32::from(p[2 - c]) - MEAN_BGR[c];
        }
    }
    out
}

/// Converts `open-nsfw.onnx` to safetensors named for this port: the initializers of each Conv
/// node are named after the node's output (`bn_stage1_block0_branch2a/…` → `stage1.block0.branch2a`).
pub fn convert_onnx(from: &Path, to: &Path) -> Result<(), String> {
    let model = crate::onnx::read(from)?;
    let mut out: HashMap<String, Tensor> = HashMap::new();
    for node in &model.nodes {
        match node.op_type.as_str() {
            "Conv" => {
                let layer = node
                    .output
                    .first()
                    .and_then(|o| o.split('/').next())
                    .and_then(|o| o.strip_prefix("bn_"))
                    .ok_or("unnamed Conv")?;
                let name = if layer == "1" {
                    "conv1".to_string()
                } else {
                    layer
                        .replace("_block", ".block")
                        .replace("_branch", ".branch")
                        .replace("_proj_shortcut", ".proj")
                };
                for (input, part) in node.input.iter().skip(1).zip(["weight", "bias"]) {
                    let t = model
                        .initializers
                        .get(input)
                        .ok_or_else(|| format!("{input} missing"))?;
                    out.insert(format!("{name}.{part}"), t.clone());
                }
            }
            "MatMul" | "Add" => {
                for input in &node.input {
                    if let Some(t) = model.initializers.get(input) {
                        let (key, t) = if node.op_type == "MatMul" {
                            (
                                "fc.weight",
                                t.t()
                                    .and_then(|t| t.contiguous())
                                    .map_err(|e| e.to_string())?,
                            )
                        } else {
                            ("fc.bias", t.clone())
                        };
                        out.insert(key.into(), t);
                    }
                }
            }
            _ => {}
        }
    }
    let expected = 2 + 2 + STAGES.iter().map(|(n, ..)| 2 * (3 * n + 1)).sum::<usize>();
    if out.len() != expected {
        return Err(format!(
            "expected {expected} tensors, found {}: not the open_nsfw graph",
            out.len()
        ));
    }
    candle_core::safetensors::save(&out, to).map_err(|e| e.to_string())
}
