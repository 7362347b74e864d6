//! MobileNetV2 (Sandler et al., 2018, <https://arxiv.org/abs/1801.04381>) with torchvision's
//! ImageNet-1k weights: inverted residual blocks, ReLU6, a 1280-d pooled feature and a 1000-way
//! classifier. Batch norms are folded into the convolutions at load time (inference only).

use candle_core::{D, DType, Device, Module, Tensor};
use candle_nn::{Linear, VarBuilder};

use crate::conv::{Activation, CandleConv, ConvSpec, FromSpec};
use crate::convnet_cpu::{self as cpu, Maps};

use crate::{ModelError, Provenance, ResolvedModel};

/// torchvision's inverted residual settings: expansion t, output channels c, repeats n, stride s.
const SETTINGS: [(usize, usize, usize, usize); 7] = [
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
];
const BN_EPS: f64 = 1e-5;
/// Width of the pooled feature.
const FEATURE: usize = 1280;
/// Input side after resize (shorter side 256) and centre crop.
pub const INPUT_SIZE: u32 = 224;
const MEAN: [f32; 3] = [0.485, 0.456, 0.406];
const STD: [f32; 3] = [0.229, 0.224, 0.225];

/// Shape of one convolution.
#[derive(Debug, Clone, Copy)]
struct Conv {
    cin: usize,
    cout: usize,
    k: usize,
    stride: usize,
    groups: usize,
}

/// Conv2d + BatchNorm folded into one convolution with bias, optionally followed by ReLU6.
/// `conv` holds the convolution weight, `bn` the batch norm that follows it.
fn conv_bn<C: FromSpec>(
    conv: VarBuilder,
    bn: VarBuilder,
    c: Conv,
    relu6: bool,
) -> candle_core::Result<C> {
    let Conv {
        cin,
        cout,
        k,
        stride,
        groups,
    } = c;
    let w = conv.get((cout, cin / groups, k, k), "weight")?;
    let gamma = bn.get(cout, "weight")?;
    let beta = bn.get(cout, "bias")?;
    let mean = bn.get(cout, "running_mean")?;
    let var = bn.get(cout, "running_var")?;
    let scale = gamma.broadcast_div(&(var + BN_EPS)?.sqrt()?)?;
    C::from_spec(ConvSpec {
        weight: w.broadcast_mul(&scale.reshape((cout, 1, 1, 1))?)?,
        bias: (beta - mean.mul(&scale)?)?,
        stride,
        pad: (k - 1) / 2,
        groups,
        act: if relu6 {
            Activation::Relu6
        } else {
            Activation::None
        },
    })
}

/// Expansion (1×1, absent when t = 1), depthwise 3×3, projection (1×1, linear), and the input
/// added back when shapes allow.
#[derive(Debug)]
struct InvertedResidual<C> {
    expand: Option<C>,
    depthwise: C,
    project: C,
    residual: bool,
}

impl<C: FromSpec> InvertedResidual<C> {
    fn new(
        vb: VarBuilder,
        cin: usize,
        cout: usize,
        stride: usize,
        t: usize,
    ) -> candle_core::Result<InvertedResidual<C>> {
        let hidden = cin * t;
        let vb = vb.pp("conv");
        let one = |cin, cout| Conv {
            cin,
            cout,
            k: 1,
            stride: 1,
            groups: 1,
        };
        let (expand, i) = if t != 1 {
            let e = conv_bn(
                vb.pp("0").pp("0"),
                vb.pp("0").pp("1"),
                one(cin, hidden),
                true,
            )?;
            (Some(e), 1)
        } else {
            (None, 0)
        };
        let dw = Conv {
            cin: hidden,
            cout: hidden,
            k: 3,
            stride,
            groups: hidden,
        };
        Ok(InvertedResidual {
            expand,
            depthwise: conv_bn(vb.pp(i).pp("0"), vb.pp(i).pp("1"), dw, true)?,
            project: conv_bn(vb.pp(i + 1), vb.pp(i + 2), one(hidden, cout), false)?,
            residual: stride == 1 && cin == cout,
        })
    }
}

impl InvertedResidual<CandleConv> {
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let y = match &self.expand {
            Some(e) => self.depthwise.forward(&e.forward(x)?)?,
            None => self.depthwise.forward(x)?,
        };
        if self.residual {
            self.project.forward_residual(&y, x)
        } else {
            self.project.forward(&y)
        }
    }
}

impl InvertedResidual<cpu::Conv> {
    /// `maps.0[0]` in, `maps.0[0]` out.
    fn run(&self, maps: &mut Maps, split: bool) {
        let [x, t1, t2, y] = &mut maps.0;
        match &self.expand {
            Some(e) => {
                e.run(x, t1, None, split);
                self.depthwise.run(t1, t2, None, split);
            }
            None => self.depthwise.run(x, t2, None, split),
        }
        if self.residual {
            // The projection adds onto the block's input in place.
            self.project.run_onto(t2, x, split);
        } else {
            self.project.run(t2, y, None, split);
            std::mem::swap(x, y);
        }
    }
}

/// The convolutions, up to the 1280-d pooled feature.
#[derive(Debug)]
struct Trunk<C> {
    stem: C,
    blocks: Vec<InvertedResidual<C>>,
    head: C,
}

impl<C: FromSpec> Trunk<C> {
    fn new(f: &VarBuilder) -> candle_core::Result<Trunk<C>> {
        let stem = Conv {
            cin: 3,
            cout: 32,
            k: 3,
            stride: 2,
            groups: 1,
        };
        let stem = conv_bn(f.pp("0").pp("0"), f.pp("0").pp("1"), stem, true)?;
        let mut blocks = Vec::new();
        let (mut cin, mut index) = (32, 1);
        for (t, c, n, s) in SETTINGS {
            for i in 0..n {
                let stride = if i == 0 { s } else { 1 };
                blocks.push(InvertedResidual::new(f.pp(index), cin, c, stride, t)?);
                cin = c;
                index += 1;
            }
        }
        let head = Conv {
            cin: 320,
            cout: FEATURE,
            k: 1,
            stride: 1,
            groups: 1,
        };
        let head = conv_bn(f.pp(index).pp("0"), f.pp(index).pp("1"), head, true)?;
        Ok(Trunk { stem, blocks, head })
    }
}

impl Trunk<CandleConv> {
    /// `[n, 3, 224, 224]` to `[n, 1280]`.
    fn pooled(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let mut x = self.stem.forward(x)?;
        for b in &self.blocks {
            x = b.forward(&x)?;
        }
        self.head.forward(&x)?.mean(D::Minus1)?.mean(D::Minus1)
    }
}

impl Trunk<cpu::Conv> {
    /// One CHW image to its 1280 pooled values.
    fn pooled(&self, image: &[f32], maps: &mut Maps, split: bool) -> Vec<f32> {
        let side = INPUT_SIZE as usize;
        let [x, t1, ..] = &mut maps.0;
        t1.load_chw(image, 3, side, side);
        self.stem.run(t1, x, None, split);
        for b in &self.blocks {
            b.run(maps, split);
        }
        let [x, t1, ..] = &mut maps.0;
        self.head.run(x, t1, None, split);
        t1.mean_pool()
    }
}

#[derive(Debug)]
enum Engine {
    Cpu(Box<Trunk<cpu::Conv>>),
    Candle(Trunk<CandleConv>),
}

/// What the network says about one image.
#[derive(Debug, Clone, PartialEq)]
pub struct ImageOutput {
    /// The 1000 ImageNet logits.
    pub logits: Vec<f32>,
    /// The 1280-d globally pooled feature before the classifier.
    pub feature: Vec<f32>,
}

/// MobileNetV2 with folded batch norms.
#[derive(Debug)]
pub struct MobileNetV2 {
    engine: Engine,
    classifier: Linear,
    device: Device,
    classes: Vec<String>,
    provenance: Provenance,
}

impl MobileNetV2 {
    /// Loads the network: our NHWC engine on the CPU, candle's ops on other devices.
    pub fn load(model: &ResolvedModel, device: &Device) -> Result<MobileNetV2, ModelError> {
        Self::load_engine(model, device, device.is_cpu())
    }

    /// Loads the network onto candle's ops even on the CPU (to check them against ours).
    #[doc(hidden)]
    pub fn load_candle_ops(
        model: &ResolvedModel,
        device: &Device,
    ) -> Result<MobileNetV2, ModelError> {
        Self::load_engine(model, device, false)
    }

    fn load_engine(
        model: &ResolvedModel,
        device: &Device,
        ours: bool,
    ) -> Result<MobileNetV2, ModelError> {
        let id = model.id.as_str();
        let tensors = candle_core::safetensors::load(model.dir.join("model.safetensors"), device)
            .map_err(|e| ModelError::load(id, e))?;
        let vb = VarBuilder::from_tensors(tensors, DType::F32, device);
        let build = || -> candle_core::Result<(Engine, Linear)> {
            let f = vb.pp("features");
            let engine = if ours {
                Engine::Cpu(Box::new(Trunk::new(&f)?))
            } else {
                Engine::Candle(Trunk::new(&f)?)
            };
            Ok((
                engine,
                candle_nn::linear(FEATURE, 1000, vb.pp("classifier").pp("1"))?,
            ))
        };
        let (engine, classifier) = build().map_err(|e| ModelError::load(id, e))?;
        let classes =
            load_classes(&model.dir.join("classes.json")).map_err(|e| ModelError::load(id, e))?;
        Ok(MobileNetV2 {
            engine,
            classifier,
            device: device.clone(),
            classes,
            provenance: Provenance::of(model, device),
        })
    }

    pub fn provenance(&self) -> &Provenance {
        &self.provenance
    }

    /// The class name of an index (`Egyptian cat`): the first of its synonyms.
    pub fn class_name(&self, index: usize) -> &str {
        self.classes
            .get(index)
            .map_or("?", |c| c.split(',').next().unwrap_or(c).trim())
    }

    /// Runs a batch of normalised `3×224×224` inputs (as produced by [`preprocess`]).
    pub fn forward(&self, inputs: &[Vec<f32>]) -> Result<Vec<ImageOutput>, ModelError> {
        let err = |e: candle_core::Error| ModelError::inference(&self.provenance.id, e);
        if inputs.is_empty() {
            return Ok(Vec::new());
        }
        let side = INPUT_SIZE as usize;
        cpu::check_inputs(inputs, 3 * side * side)
            .map_err(|e| ModelError::inference(&self.provenance.id, e))?;
        let feature = match &self.engine {
            Engine::Cpu(trunk) => {
                let rows = cpu::batch(inputs, |x, maps, split| trunk.pooled(x, maps, split));
                Tensor::from_vec(rows.concat(), (inputs.len(), FEATURE), &self.device)
            }
            Engine::Candle(trunk) => {
                let flat: Vec<f32> = inputs.iter().flatten().copied().collect();
                Tensor::from_vec(flat, (inputs.len(), 3, side, side), &self.device)
                    .and_then(|x| trunk.pooled(&x))
            }
        }
        .map_err(err)?;
        let logits = self.classifier.forward(&feature).map_err(err)?;
        let (features, logits) = (
            feature.to_vec2::<f32>().map_err(err)?,
            logits.to_vec2::<f32>().map_err(err)?,
        );
        Ok(features
            .into_iter()
            .zip(logits)
            .map(|(feature, logits)| ImageOutput { logits, feature })
            .collect())
    }
}

/// Softmax probabilities of the `k` most likely classes, most likely first.
pub fn top_k(logits: &[f32], k: usize) -> Vec<(usize, f32)> {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let exp: Vec<f32> = logits.iter().map(|l| (l - max).exp()).collect();
    let sum: f32 = exp.iter().sum();
    let mut idx: Vec<usize> = (0..logits.len()).collect();
    idx.sort_by(|&a, &b| logits[b].total_cmp(&logits[a]));
    idx.into_iter().take(k).map(|i| (i, exp[i] / sum)).collect()
}

/// torchvision's eval transform: resize the shorter side to 256 (bilinear), centre-crop 224,
/// scale to [0, 1], normalise with the ImageNet mean and std; CHW order.
pub fn preprocess(rgb: &image::RgbImage) -> Vec<f32> {
    normalise(&center_crop(rgb))
}

/// The 224×224 crop torchvision's eval transform takes.
pub fn center_crop(rgb: &image::RgbImage) -> image::RgbImage {
    crate::imageprep::resize_center_crop(
        rgb,
        256,
        INPUT_SIZE,
        crate::imageprep::Filter::Bilinear,
        crate::imageprep::LongSide::Round,
    )
}

/// A 224×224 RGB crop to the normalised CHW input.
pub fn normalise(crop: &image::RgbImage) -> Vec<f32> {
    crate::imageprep::normalize_chw(crop, MEAN, STD)
}

fn load_classes(path: &std::path::Path) -> Result<Vec<String>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| e.to_string())?;
    let map: std::collections::BTreeMap<String, String> =
        serde_json::from_str(&text).map_err(|e| e.to_string())?;
    let mut classes = vec![String::new(); 1000];
    for (k, v) in map {
        let i: usize = k.parse().map_err(|_| format!("class key {k}"))?;
        *classes
            .get_mut(i)
            .ok_or_else(|| format!("class index {i}"))? = v;
    }
    Ok(classes)
}
