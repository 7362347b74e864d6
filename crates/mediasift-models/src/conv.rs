//! Convolutions as the convolution networks load them, for either engine: on the CPU in f32
//! our NHWC engine ([`crate::convnet_cpu`]), elsewhere candle's conv2d ([`CandleConv`], NCHW).
//! Weights arrive in PyTorch's `(out, in/groups, k, k)` layout.

use candle_core::{Module, Result, Tensor};
use candle_nn::{Conv2d, Conv2dConfig};

use crate::convnet_cpu;

/// What follows the convolution, applied in the same pass as the bias.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activation {
    None,
    Relu,
    /// `min(max(x, 0), 6)` (MobileNetV2).
    Relu6,
}

impl Activation {
    pub(crate) fn apply_all(self, xs: &mut [f32]) {
        match self {
            Activation::None => {}
            Activation::Relu => xs.iter_mut().for_each(|v| *v = v.max(0.0)),
            Activation::Relu6 => xs.iter_mut().for_each(|v| *v = v.clamp(0.0, 6.0)),
        }
    }

    /// The activation as `min(max(x, lo), hi)`.
    pub(crate) fn clamp(self) -> Option<(f32, f32)> {
        match self {
            Activation::None => None,
            Activation::Relu => Some((0.0, f32::INFINITY)),
            Activation::Relu6 => Some((0.0, 6.0)),
        }
    }

    fn tensor(self, y: Tensor) -> Result<Tensor> {
        match self {
            Activation::None => Ok(y),
            Activation::Relu => y.relu(),
            Activation::Relu6 => y.clamp(0f32, 6f32),
        }
    }
}

/// One loaded convolution: weight, bias (folded batch norm included), stride, padding on all
/// sides, groups and the activation after it.
#[derive(Debug, Clone)]
pub(crate) struct ConvSpec {
    pub weight: Tensor,
    pub bias: Tensor,
    pub stride: usize,
    pub pad: usize,
    pub groups: usize,
    pub act: Activation,
}

/// A convolution an engine builds from a [`ConvSpec`].
pub(crate) trait FromSpec: Sized {
    fn from_spec(spec: ConvSpec) -> Result<Self>;
}

impl FromSpec for convnet_cpu::Conv {
    fn from_spec(s: ConvSpec) -> Result<Self> {
        convnet_cpu::Conv::new(&s.weight, &s.bias, s.stride, s.pad, s.groups, s.act)
    }
}

/// candle's conv2d followed by the activation (NCHW tensors).
#[derive(Debug)]
pub(crate) struct CandleConv {
    conv: Conv2d,
    act: Activation,
}

impl FromSpec for CandleConv {
    fn from_spec(s: ConvSpec) -> Result<Self> {
        let cfg = Conv2dConfig {
            padding: s.pad,
            stride: s.stride,
            dilation: 1,
            groups: s.groups,
            cudnn_fwd_algo: None,
        };
        Ok(CandleConv {
            conv: Conv2d::new(s.weight, Some(s.bias), cfg),
            act: s.act,
        })
    }
}

impl CandleConv {
    /// `act(conv(x) + bias + residual)`, as [`convnet_cpu::Conv::run`] computes it.
    pub fn forward_residual(&self, x: &Tensor, residual: &Tensor) -> Result<Tensor> {
        self.act.tensor((self.conv.forward(x)? + residual)?)
    }
}

impl Module for CandleConv {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.act.tensor(self.conv.forward(x)?)
    }
}
