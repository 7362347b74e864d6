//! Yahoo's open_nsfw (<https://github.com/yahoo/open_nsfw>): a ResNet-50 with half the channels
//! ("resnet_50_1by2"), batch norms already folded into the convolutions, scoring [sfw, nsfw].
//! The weights come from the `open-nsfw.onnx` export; [`convert_onnx`] renames its initializers
//! to this port's layout by following the graph (each Conv's output names its layer).

use std::collections::HashMap;
use std::path::Path;

use candle_core::{D, DType, Device, Module, Tensor};
use candle_nn::VarBuilder;

use crate::conv::{Activation, CandleConv, ConvSpec, FromSpec};
use crate::convnet_cpu::{self as cpu, Maps};

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

fn conv<C: FromSpec>(
    vb: VarBuilder,
    (cin, cout, k): (usize, usize, usize),
    stride: usize,
    pad: usize,
    act: Activation,
) -> candle_core::Result<C> {
    C::from_spec(ConvSpec {
        weight: vb.get((cout, cin, k, k), "weight")?,
        bias: vb.get(cout, "bias")?,
        stride,
        pad,
        groups: 1,
        act,
    })
}

/// A bottleneck block: `relu(c(b(a(x))) + shortcut)`, the ReLU fused into `c`.
#[derive(Debug)]
struct Bottleneck<C> {
    a: C,
    b: C,
    c: C,
    proj: Option<C>,
}

impl<C: FromSpec> Bottleneck<C> {
    fn new(
        vb: VarBuilder,
        (cin, mid, cout): (usize, usize, usize),
        stride: usize,
        first: bool,
    ) -> candle_core::Result<Bottleneck<C>> {
        Ok(Bottleneck {
            // Caffe-style: the stride sits on the first 1x1 convolution.
            a: conv(
                vb.pp("branch2a"),
                (cin, mid, 1),
                stride,
                0,
                Activation::Relu,
            )?,
            b: conv(vb.pp("branch2b"), (mid, mid, 3), 1, 1, Activation::Relu)?,
            c: conv(vb.pp("branch2c"), (mid, cout, 1), 1, 0, Activation::Relu)?,
            proj: if first {
                Some(conv(
                    vb.pp("proj"),
                    (cin, cout, 1),
                    stride,
                    0,
                    Activation::None,
                )?)
            } else {
                None
            },
        })
    }
}

impl Bottleneck<CandleConv> {
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let y = self.b.forward(&self.a.forward(x)?)?;
        let shortcut = match &self.proj {
            Some(p) => p.forward(x)?,
            None => x.clone(),
        };
        self.c.forward_residual(&y, &shortcut)
    }
}

impl Bottleneck<cpu::Conv> {
    /// `maps.0[0]` in, `maps.0[0]` out.
    fn run(&self, maps: &mut Maps, split: bool) {
        let [x, t1, t2, _] = &mut maps.0;
        self.a.run(x, t1, None, split);
        self.b.run(t1, t2, None, split);
        // `c` adds onto the shortcut in place.
        match &self.proj {
            Some(p) => {
                p.run(x, t1, None, split);
                self.c.run_onto(t2, t1, split);
                std::mem::swap(x, t1);
            }
            None => self.c.run_onto(t2, x, split),
        }
    }
}

/// The convolutions, up to the globally pooled 1024-d feature.
#[derive(Debug)]
struct Trunk<C> {
    conv1: C,
    blocks: Vec<Bottleneck<C>>,
}

impl<C: FromSpec> Trunk<C> {
    fn new(vb: &VarBuilder) -> candle_core::Result<Trunk<C>> {
        let conv1 = conv(vb.pp("conv1"), (3, 64, 7), 2, 3, Activation::Relu)?;
        let mut blocks = Vec::new();
        let mut cin = 64;
        for (s, (n, mid, cout, stride)) in STAGES.into_iter().enumerate() {
            for b in 0..n {
                let vb = vb.pp(format!("stage{s}")).pp(format!("block{b}"));
                let stride = if b == 0 { stride } else { 1 };
                blocks.push(Bottleneck::new(vb, (cin, mid, cout), stride, b == 0)?);
                cin = cout;
            }
        }
        Ok(Trunk { conv1, blocks })
    }
}

impl Trunk<CandleConv> {
    /// `[n, 3, 224, 224]` to `[n, 1024]`.
    fn pooled(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let x = self.conv1.forward(x)?;
        // TF "SAME" max pool: 3x3, stride 2, one extra row and column at the bottom/right.
        let mut x = x
            .pad_with_same(D::Minus1, 0, 1)?
            .pad_with_same(D::Minus2, 0, 1)?
            .max_pool2d_with_stride(3, 2)?;
        for b in &self.blocks {
            x = b.forward(&x)?;
        }
        x.mean(D::Minus1)?.mean(D::Minus1)
    }
}

impl Trunk<cpu::Conv> {
    /// One CHW image to its 1024 pooled values.
    fn pooled(&self, image: &[f32], maps: &mut Maps, split: bool) -> Vec<f32> {
        let side = INPUT_SIZE as usize;
        let [x, t1, t2, ..] = &mut maps.0;
        t1.load_chw(image, 3, side, side);
        self.conv1.run(t1, t2, None, split);
        // The same pool as above: taps past the edge are ignored, as edge padding does.
        cpu::max_pool(t2, x, 3, 2, 1, split);
        for b in &self.blocks {
            b.run(maps, split);
        }
        maps.0[0].mean_pool()
    }
}

#[derive(Debug)]
enum Engine {
    Cpu(Box<Trunk<cpu::Conv>>),
    Candle(Trunk<CandleConv>),
}

/// The open_nsfw network.
#[derive(Debug)]
pub struct OpenNsfw {
    engine: Engine,
    fc_w: Tensor,
    fc_b: Tensor,
    device: Device,
    provenance: Provenance,
}

impl OpenNsfw {
    /// Loads the network: our NHWC engine on the CPU, candle's ops on other devices.
    pub fn load(model: &ResolvedModel, device: &Device) -> Result<OpenNsfw, ModelError> {
        Self::load_engine(model, device, device.is_cpu())
    }

    /// Loads the network onto candle's ops even on the CPU (to check them against ours).
    #[doc(hidden)]
    pub fn load_candle_ops(model: &ResolvedModel, device: &Device) -> Result<OpenNsfw, ModelError> {
        Self::load_engine(model, device, false)
    }

    fn load_engine(
        model: &ResolvedModel,
        device: &Device,
        ours: bool,
    ) -> Result<OpenNsfw, ModelError> {
        let id = model.id.as_str();
        let tensors = candle_core::safetensors::load(model.dir.join("model.safetensors"), device)
            .map_err(|e| ModelError::load(id, e))?;
        let vb = VarBuilder::from_tensors(tensors, DType::F32, device);
        let build = || -> candle_core::Result<(Engine, Tensor, Tensor)> {
            let engine = if ours {
                Engine::Cpu(Box::new(Trunk::new(&vb)?))
            } else {
                Engine::Candle(Trunk::new(&vb)?)
            };
            let fc = vb.pp("fc");
            Ok((engine, fc.get((2, 1024), "weight")?, fc.get(2, "bias")?))
        };
        let (engine, fc_w, fc_b) = build().map_err(|e| ModelError::load(id, e))?;
        Ok(OpenNsfw {
            engine,
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
        cpu::check_inputs(inputs, 3 * side * side)
            .map_err(|e| ModelError::inference(&self.provenance.id, e))?;
        let run = || -> candle_core::Result<Vec<Vec<f32>>> {
            let pooled = match &self.engine {
                Engine::Cpu(trunk) => {
                    let rows = cpu::batch(inputs, |x, maps, split| trunk.pooled(x, maps, split));
                    Tensor::from_vec(rows.concat(), (inputs.len(), 1024), &self.device)?
                }
                Engine::Candle(trunk) => {
                    let flat: Vec<f32> = inputs.iter().flatten().copied().collect();
                    let x = Tensor::from_vec(flat, (inputs.len(), 3, side, side), &self.device)?;
                    trunk.pooled(&x)?
                }
            };
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
