//! Convolution paths for CPU inference. candle's CPU conv2d runs a grouped convolution as one
//! convolution per group (960 of them for MobileNetV2's widest depthwise layer): depthwise
//! layers here are k² shifted multiply-adds instead, and 1×1 stride-1 layers one matmul. Other
//! shapes use candle's kernel (an im2col of shifted views measured slower than it; see the
//! benchmark notes). Weights keep PyTorch's `(out, in/groups, k, k)` layout; tensors are NCHW.

use candle_core::{Module, Result, Tensor};
use candle_nn::{Conv2d, Conv2dConfig};

#[derive(Debug)]
enum Kind {
    /// 1×1, stride 1: `(out, in)` weights.
    Matmul(Tensor),
    /// k² taps of `(channels, 1, 1)`.
    Depthwise(Vec<Tensor>),
    /// Anything else: candle's own kernel.
    Fallback(Conv2d),
}

/// A 2-D convolution with bias, padding on all sides and a stride.
#[derive(Debug)]
pub struct FastConv {
    kind: Kind,
    bias: Tensor,
    k: usize,
    stride: usize,
    padding: usize,
}

impl FastConv {
    pub fn new(
        w: Tensor,
        bias: Tensor,
        stride: usize,
        padding: usize,
        groups: usize,
    ) -> Result<FastConv> {
        let (cout, cin_g, k, k2) = w.dims4()?;
        if k != k2 {
            candle_core::bail!("only square kernels are supported");
        }
        let kind = if groups == 1 && k == 1 && stride == 1 && padding == 0 {
            Kind::Matmul(w.reshape((cout, cin_g))?)
        } else if cin_g == 1 && groups == cout {
            let taps = (0..k * k)
                .map(|t| {
                    w.narrow(2, t / k, 1)?
                        .narrow(3, t % k, 1)?
                        .reshape((cout, 1, 1))
                })
                .collect::<Result<Vec<_>>>()?;
            Kind::Depthwise(taps)
        } else {
            let cfg = Conv2dConfig {
                padding,
                stride,
                dilation: 1,
                groups,
                cudnn_fwd_algo: None,
            };
            Kind::Fallback(Conv2d::new(w, Some(bias.clone()), cfg))
        };
        Ok(FastConv {
            kind,
            bias,
            k,
            stride,
            padding,
        })
    }

    /// Output size along one axis.
    fn out_len(&self, len: usize) -> usize {
        (len + 2 * self.padding - self.k) / self.stride + 1
    }
}

impl Module for FastConv {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let (n, c, h, w) = x.dims4()?;
        let (ho, wo) = (self.out_len(h), self.out_len(w));
        let p = self.padding;
        match &self.kind {
            Kind::Fallback(conv) => conv.forward(x),
            Kind::Matmul(wm) => {
                let y = wm.broadcast_left(n)?.matmul(&x.reshape((n, c, h * w))?)?;
                y.broadcast_add(&self.bias.reshape((wm.dim(0)?, 1))?)?
                    .reshape((n, wm.dim(0)?, ho, wo))
            }
            Kind::Depthwise(taps) => {
                // Stride 1 over the padded input, then every s-th row and column once.
                let xp = x.pad_with_zeros(2, p, p)?.pad_with_zeros(3, p, p)?;
                let (h1, w1) = (h + 2 * p - self.k + 1, w + 2 * p - self.k + 1);
                let mut y = self
                    .bias
                    .reshape((c, 1, 1))?
                    .broadcast_as((n, c, h1, w1))?
                    .contiguous()?;
                for (t, tap) in taps.iter().enumerate() {
                    let view = xp.narrow(2, t / self.k, h1)?.narrow(3, t % self.k, w1)?;
                    y = (y + view.broadcast_mul(tap)?)?;
                }
                let s = self.stride;
                if s == 1 {
                    return Ok(y);
                }
                let y = y
                    .pad_with_zeros(2, 0, s * ho - h1)?
                    .pad_with_zeros(3, 0, s * wo - w1)?;
                y.reshape((n, c, ho, s, wo, s))?
                    .narrow(3, 0, 1)?
                    .narrow(5, 0, 1)?
                    .reshape((n, c, ho, wo))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use candle_core::{Device, Tensor};

    use super::*;

    /// Every path against candle's reference conv2d on random data.
    #[test]
    fn matches_candles_conv2d() {
        let dev = Device::Cpu;
        let cases = [
            (8, 16, 1, 1, 0, 1),
            (8, 16, 3, 1, 1, 1),
            (8, 16, 3, 2, 1, 1),
            (3, 8, 7, 2, 3, 1),
            (16, 16, 3, 1, 1, 16),
            (16, 16, 3, 2, 1, 16),
            (8, 16, 1, 2, 0, 1),
        ];
        for (cin, cout, k, stride, padding, groups) in cases {
            let x = Tensor::randn(0f32, 1.0, (2, cin, 15, 14), &dev).unwrap();
            let w = Tensor::randn(0f32, 1.0, (cout, cin / groups, k, k), &dev).unwrap();
            let b = Tensor::randn(0f32, 1.0, cout, &dev).unwrap();
            let ours = FastConv::new(w.clone(), b.clone(), stride, padding, groups)
                .unwrap()
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
            assert_eq!(
                ours.dims(),
                theirs.dims(),
                "case {cin},{cout},{k},{stride},{padding},{groups}"
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
                "case {cin},{cout},{k},{stride},{padding},{groups}: {d}"
            );
        }
    }
}
