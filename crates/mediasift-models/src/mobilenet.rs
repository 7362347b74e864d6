//! MobileNetV2 (Sandler et al., 2018, <https://arxiv.org/abs/1801.04381>) with torchvision's
//! ImageNet-1k weights: inverted residual blocks, ReLU6, a 1280-d pooled feature and a 1000-way
//! classifier. Batch norms are folded into the convolutions at load time (inference only).

use candle_core::{D, DType, Device, Module, Tensor};
use candle_nn::{Linear, VarBuilder};

use crate::conv::{Activation, FastConv};

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
#[derive(Debug)]
struct ConvBn {
    conv: FastConv,
}

impl ConvBn {
    /// `conv` holds the convolution weight, `bn` the batch norm that follows it.
    fn new(conv: VarBuilder, bn: VarBuilder, c: Conv, relu6: bool) -> candle_core::Result<ConvBn> {
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
        let w = w.broadcast_mul(&scale.reshape((cout, 1, 1, 1))?)?;
        let b = (beta - mean.mul(&scale)?)?;
        let activation = if relu6 {
            Activation::Relu6
        } else {
            Activation::None
        };
        Ok(ConvBn {
            conv: FastConv::new(w, b, stride, (k - 1) / 2, groups)?.with_activation(activation),
        })
    }

    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        self.conv.forward(x)
    }
}

#[derive(Debug)]
struct InvertedResidual {
    layers: Vec<ConvBn>,
    residual: bool,
}

impl InvertedResidual {
    fn new(
        vb: VarBuilder,
        cin: usize,
        cout: usize,
        stride: usize,
        t: usize,
    ) -> candle_core::Result<InvertedResidual> {
        let hidden = cin * t;
        let vb = vb.pp("conv");
        let mut layers = Vec::new();
        let mut i = 0;
        if t != 1 {
            layers.push(ConvBn::new(
                vb.pp("0").pp("0"),
                vb.pp("0").pp("1"),
                Conv {
                    cin,
                    cout: hidden,
                    k: 1,
                    stride: 1,
                    groups: 1,
                },
                true,
            )?);
            i = 1;
        }
        layers.push(ConvBn::new(
            vb.pp(i).pp("0"),
            vb.pp(i).pp("1"),
            Conv {
                cin: hidden,
                cout: hidden,
                k: 3,
                stride,
                groups: hidden,
            },
            true,
        )?);
        layers.push(ConvBn::new(
            vb.pp(i + 1),
            vb.pp(i + 2),
            Conv {
                cin: hidden,
                cout,
                k: 1,
                stride: 1,
                groups: 1,
            },
            false,
        )?);
        Ok(InvertedResidual {
            layers,
            residual: stride == 1 && cin == cout,
        })
    }

    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let mut y = x.clone();
        for l in &self.layers {
            y = l.forward(&y)?;
        }
        if self.residual { y + x } else { Ok(y) }
    }
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
    stem: ConvBn,
    blocks: Vec<InvertedResidual>,
    head: ConvBn,
    classifier: Linear,
    device: Device,
    classes: Vec<String>,
    provenance: Provenance,
}

impl MobileNetV2 {
    pub fn load(model: &ResolvedModel, device: &Device) -> Result<MobileNetV2, ModelError> {
        let id = model.id.as_str();
        let tensors = candle_core::safetensors::load(model.dir.join("model.safetensors"), device)
            .map_err(|e| ModelError::load(id, e))?;
        let vb = VarBuilder::from_tensors(tensors, DType::F32, device);
        let net = Self::build(vb.pp("features"), vb.pp("classifier").pp("1"))
            .map_err(|e| ModelError::load(id, e))?;
        let classes =
            load_classes(&model.dir.join("classes.json")).map_err(|e| ModelError::load(id, e))?;
        let (stem, blocks, head, classifier) = net;
        Ok(MobileNetV2 {
            stem,
            blocks,
            head,
            classifier,
            device: device.clone(),
            classes,
            provenance: Provenance::of(model, device),
        })
    }

    #[allow(clippy::type_complexity)]
    fn build(
        f: VarBuilder,
        cls: VarBuilder,
    ) -> candle_core::Result<(ConvBn, Vec<InvertedResidual>, ConvBn, Linear)> {
        let stem = ConvBn::new(
            f.pp("0").pp("0"),
            f.pp("0").pp("1"),
            Conv {
                cin: 3,
                cout: 32,
                k: 3,
                stride: 2,
                groups: 1,
            },
            true,
        )?;
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
        let head = ConvBn::new(
            f.pp(index).pp("0"),
            f.pp(index).pp("1"),
            Conv {
                cin: 320,
                cout: 1280,
                k: 1,
                stride: 1,
                groups: 1,
            },
            true,
        )?;
        let classifier = candle_nn::linear(1280, 1000, cls)?;
        Ok((stem, blocks, head, classifier))
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
        let flat: Vec<f32> = inputs.iter().flatten().copied().collect();
        let x = Tensor::from_vec(flat, (inputs.len(), 3, side, side), &self.device).map_err(err)?;
        let mut x = self.stem.forward(&x).map_err(err)?;
        for b in &self.blocks {
            x = b.forward(&x).map_err(err)?;
        }
        let x = self.head.forward(&x).map_err(err)?;
        let feature = x
            .mean(D::Minus1)
            .and_then(|t| t.mean(D::Minus1))
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
