//! Convolutions for inference. On the CPU (f32), dense and depthwise convolutions run our own
//! kernels ([`crate::conv_kernels`]: im2col + one matrix product per image, k² shifted
//! multiply-adds per depthwise plane) with the bias and the activation fused in; candle's CPU
//! conv2d converts every input to NHWC on one thread and runs a grouped convolution as one
//! convolution per group (960 of them for MobileNetV2's widest depthwise layer). Other devices
//! and dtypes use candle's conv2d. Weights keep PyTorch's `(out, in/groups, k, k)` layout;
//! tensors are NCHW.

use candle_core::{DType, Module, Result, Tensor};
use candle_nn::{Conv2d, Conv2dConfig};

pub use crate::conv_kernels::Activation;
use crate::conv_kernels::{self, Geometry};

/// A 2-D convolution with bias, padding on all sides, a stride and a fused activation.
#[derive(Debug)]
pub struct FastConv {
    weight: Tensor,
    bias: Tensor,
    activation: Activation,
    /// candle's own, for other devices and dtypes; its config holds stride, padding and groups.
    candle: Conv2d,
}

impl FastConv {
    pub fn new(
        w: Tensor,
        bias: Tensor,
        stride: usize,
        padding: usize,
        groups: usize,
    ) -> Result<FastConv> {
        let (_, _, k, k2) = w.dims4()?;
        if k != k2 {
            candle_core::bail!("only square kernels are supported");
        }
        let w = w.contiguous()?;
        let bias = bias.contiguous()?;
        let cfg = Conv2dConfig {
            padding,
            stride,
            dilation: 1,
            groups,
            cudnn_fwd_algo: None,
        };
        Ok(FastConv {
            candle: Conv2d::new(w.clone(), Some(bias.clone()), cfg),
            weight: w,
            bias,
            activation: Activation::None,
        })
    }

    /// The same convolution followed by `activation`.
    pub fn with_activation(mut self, activation: Activation) -> FastConv {
        self.activation = activation;
        self
    }

    fn activate(&self, y: Tensor) -> Result<Tensor> {
        match self.activation {
            Activation::None => Ok(y),
            Activation::Relu => y.relu(),
            Activation::Relu6 => y.clamp(0f32, 6f32),
        }
    }

    /// Our CPU kernels, where they apply: `None` otherwise.
    fn forward_cpu(&self, x: &Tensor) -> Result<Option<Tensor>> {
        let (cout, cin_g, k, _) = self.weight.dims4()?;
        let (n, c, h, w) = x.dims4()?;
        let Conv2dConfig {
            padding,
            stride,
            groups,
            ..
        } = *self.candle.config();
        let depthwise = cin_g == 1 && groups == cout && cout == c;
        if !x.device().is_cpu()
            || x.dtype() != DType::F32
            || self.weight.dtype() != DType::F32
            || !(groups == 1 || depthwise)
            || c != cin_g * groups
            || h + 2 * padding < k
            || w + 2 * padding < k
        {
            return Ok(None);
        }
        let g = Geometry {
            n,
            c,
            h,
            w,
            cout,
            k,
            stride,
            pad: padding,
        };
        let x = x.contiguous()?;
        let out = with_slice(&x, |xs| {
            with_slice(&self.weight, |ws| {
                with_slice(&self.bias, |bs| {
                    Ok(if depthwise {
                        conv_kernels::depthwise(xs, ws, bs, &g, self.activation)
                    } else {
                        conv_kernels::dense(xs, ws, bs, &g, self.activation)
                    })
                })
            })
        })?;
        Tensor::from_vec(out, (n, cout, g.ho(), g.wo()), x.device()).map(Some)
    }
}

/// The f32 elements of a contiguous CPU tensor.
fn with_slice<R>(t: &Tensor, f: impl FnOnce(&[f32]) -> Result<R>) -> Result<R> {
    crate::cpu_tensor::with_f32(t, f)?
        .unwrap_or_else(|| candle_core::bail!("expected a contiguous f32 CPU tensor"))
}

impl Module for FastConv {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        match self.forward_cpu(x)? {
            Some(y) => Ok(y),
            None => self.activate(self.candle.forward(x)?),
        }
    }
}

#[cfg(test)]
mod tests {
    use candle_core::{Device, Tensor};

    use super::*;

    /// Every path (dense, 1×1, strided, depthwise, grouped fallback; each activation; batch of
    /// 1 with the product split over threads, batches of 2 and 3 with images in parallel)
    /// against candle's conv2d on random data.
    #[test]
    fn matches_candles_conv2d() {
        let dev = Device::Cpu;
        use Activation::{None as Linear, Relu, Relu6};
        let cases = [
            (1, 8, 16, 1, 1, 0, 1, Linear),
            (2, 8, 16, 3, 1, 1, 1, Relu),
            (3, 8, 16, 3, 2, 1, 1, Relu6),
            (1, 3, 8, 7, 2, 3, 1, Relu),
            (2, 16, 16, 3, 1, 1, 16, Relu6),
            (1, 16, 16, 3, 2, 1, 16, Linear),
            (3, 12, 12, 5, 2, 2, 12, Relu),
            (2, 8, 16, 1, 2, 0, 1, Relu),
            (2, 8, 16, 3, 1, 1, 4, Relu6),
            (1, 4, 4, 3, 1, 0, 4, Linear),
        ];
        for (n, cin, cout, k, stride, padding, groups, act) in cases {
            let x = Tensor::randn(0f32, 1.0, (n, cin, 15, 14), &dev).unwrap();
            let w = Tensor::randn(0f32, 1.0, (cout, cin / groups, k, k), &dev).unwrap();
            let b = Tensor::randn(0f32, 1.0, cout, &dev).unwrap();
            let ours = FastConv::new(w.clone(), b.clone(), stride, padding, groups)
                .unwrap()
                .with_activation(act)
                .forward(&x)
                .unwrap();
            let cfg = Conv2dConfig {
                padding,
                stride,
                dilation: 1,
                groups,
                cudnn_fwd_algo: None,
            };
            let theirs = Conv2d::new(w, Some(b), cfg).forward(&x).unwrap();
            let theirs = match act {
                Activation::None => theirs,
                Activation::Relu => theirs.relu().unwrap(),
                Activation::Relu6 => theirs.clamp(0f32, 6f32).unwrap(),
            };
            assert_eq!(
                ours.dims(),
                theirs.dims(),
                "case {n},{cin},{cout},{k},{stride},{padding},{groups}"
            );
            let d = (ours - theirs)
                .unwrap()
                .abs()
                .unwrap()
                .max_all()
                .unwrap()
                .to_scalar::<f32>()
                .unwrap();
            assert!(
                d < 1e-3,
                "case {n},{cin},{cout},{k},{stride},{padding},{groups}: {d}"
            );
        }
    }
}
