//! Convolution networks on the CPU in f32: activations in NHWC (channels innermost), one image
//! per thread, buffers reused from batch to batch.
//!
//! Through candle tensors in NCHW, every layer of open_nsfw and MobileNetV2 allocated (and
//! page-faulted) a fresh output, the residual additions and ReLUs were separate whole-batch
//! passes, both cores met at a barrier after every op, and a depthwise convolution worked one
//! plane at a time along rows as short as 7 pixels. Here:
//!
//! - A batch with at least one image per thread runs each image through the whole network on
//!   one thread ([`batch`]): single-threaded products, no barriers. Leftover images
//!   (fewer than the threads) run one at a time with each layer's output rows split over the
//!   pool.
//! - A dense convolution is one product `[pixels, k·k·cin] · [k·k·cin, cout]` per chunk of
//!   output rows sized to stay in cache: the NHWC image already is that matrix for a 1×1
//!   stride-1 convolution; a 3×3 stride-1 one on a map at least [`SHIFTED_MIN_W`] wide reads
//!   a zero-bordered copy of its input where it lies, one shifted matrix per kernel row
//!   ([`Conv::shifted_rows`]), and so does a wide stem with few input channels, one product
//!   per output row ([`Conv::shifted_by_row`]); otherwise the chunk is unfolded first (one
//!   copy of `k·cin` values per pixel and kernel row). The product runs on
//!   [`crate::packed_gemm`]'s kernels with the weights packed at load; the bias, the residual
//!   (for a block's last convolution, read by the kernels from its own map) and the activation
//!   are applied in registers.
//! - A depthwise convolution multiplies whole pixels (all channels, vectorised) by each tap;
//!   3×3 rows run on [`crate::depthwise3x3`] (AVX-512 or AVX2 + FMA).

use std::cell::RefCell;
use std::ops::Range;

use candle_core::{DType, Tensor};
use rayon::prelude::*;

use crate::conv::Activation;
use crate::depthwise3x3;
use crate::packed_gemm::{Epilogue, Lhs, PackedB};
use crate::team;

/// Floats of unfolded input plus output a dense chunk aims to keep in cache (1 MiB; measured
/// with OpenBLAS products, which repacked the weights per chunk: 64 Ki floats were ~4-7 %
/// slower, a whole image per product no better, and groups of 2-8 images per thread sharing one
/// product slower still).
const CHUNK_FLOATS: usize = 1 << 18;
/// The narrowest map a 3×3 convolution runs shifted on (see [`Conv::shift`]); narrower ones
/// are unfolded.
const SHIFTED_MIN_W: usize = 28;
/// Floats of input plus output a shifted chunk aims to keep in cache.
const SHIFTED_CHUNK_FLOATS: usize = 1 << 17;
/// Channels of a depthwise output pixel accumulated in registers at once (four AVX2 vectors).
const LANES: usize = 32;

/// One image's activations, `h × w × c` with channels innermost.
#[derive(Debug, Default, Clone)]
pub(crate) struct Map {
    pub h: usize,
    pub w: usize,
    pub c: usize,
    pub data: Vec<f32>,
}

impl Map {
    /// Reshapes, keeping the allocation; the caller overwrites every value.
    fn shape(&mut self, h: usize, w: usize, c: usize) {
        (self.h, self.w, self.c) = (h, w, c);
        self.data.resize(h * w * c, 0.0);
    }

    /// Loads a `c × h × w` (CHW) image.
    pub fn load_chw(&mut self, chw: &[f32], c: usize, h: usize, w: usize) {
        assert_eq!(chw.len(), c * h * w, "image of the wrong size");
        self.shape(h, w, c);
        let plane = h * w;
        for (p, pixel) in self.data.chunks_exact_mut(c).enumerate() {
            for (ch, v) in pixel.iter_mut().enumerate() {
                *v = chw[ch * plane + p];
            }
        }
    }

    /// The mean over all pixels, per channel.
    pub fn mean_pool(&self) -> Vec<f32> {
        let mut sum = vec![0f32; self.c];
        for pixel in self.data.chunks_exact(self.c) {
            for (s, v) in sum.iter_mut().zip(pixel) {
                *s += v;
            }
        }
        let n = (self.h * self.w).max(1) as f32;
        sum.iter_mut().for_each(|s| *s /= n);
        sum
    }
}

/// The activation maps one image's pass reuses (which a network uses for what is its own
/// business).
#[derive(Debug, Default)]
pub(crate) struct Maps(pub [Map; 4]);

thread_local! {
    static MAPS: RefCell<Maps> = RefCell::default();
    /// An unfolded chunk, or a chunk of a shifted convolution's output.
    static SCRATCH: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
    /// A shifted convolution's zero-bordered input.
    static BORDERED: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

/// Runs `f` with this thread's maps (a fresh set if they are in use further up the stack).
fn with_maps<R>(f: impl FnOnce(&mut Maps) -> R) -> R {
    MAPS.with(|m| match m.try_borrow_mut() {
        Ok(mut maps) => f(&mut maps),
        Err(_) => f(&mut Maps::default()),
    })
}

/// Runs `f` with `len` floats of this thread's `buffer` (values undefined).
fn with_buffer<R>(
    buffer: &'static std::thread::LocalKey<RefCell<Vec<f32>>>,
    len: usize,
    f: impl FnOnce(&mut [f32]) -> R,
) -> R {
    buffer.with(|s| match s.try_borrow_mut() {
        Ok(mut buf) => {
            if buf.len() < len {
                buf.resize(len, 0.0);
            }
            f(&mut buf[..len])
        }
        Err(_) => f(&mut vec![0f32; len]),
    })
}

/// Runs `image(input, maps, split)` over a batch: one image per thread for as many whole rounds
/// as the pool allows, the rest one at a time with their layers split over the pool (`split`).
pub(crate) fn batch<R: Send>(
    images: &[Vec<f32>],
    image: impl Fn(&[f32], &mut Maps, bool) -> R + Sync,
) -> Vec<R> {
    let threads = rayon::current_num_threads().max(1);
    let whole = if threads > 1 {
        images.len() / threads * threads
    } else {
        images.len()
    };
    let mut out: Vec<R> = images[..whole]
        .par_iter()
        .with_max_len(1)
        .map(|x| with_maps(|m| image(x, m, false)))
        .collect();
    // Split images have one parallel step per layer (52 for MobileNetV2, on layers of 30-200
    // µs). As rayon joins, a second thread added 13-28 % at batch 1 for MobileNetV2 and 24-47 %
    // for open_nsfw (three machines), against 2.0x for whole images per thread; over a team
    // that spins between the layers (`team`), 53-68 % and 70 % on a 2-vCPU Xeon.
    let rest = &images[whole..];
    if !rest.is_empty() {
        let image = &image;
        out.extend(team::with_team(|| {
            rest.iter()
                .map(|x| with_maps(|m| image(x, m, true)))
                .collect::<Vec<R>>()
        }));
    }
    out
}

/// An error naming the first input that is not `len` values long.
pub(crate) fn check_inputs(inputs: &[Vec<f32>], len: usize) -> Result<(), String> {
    match inputs.iter().position(|x| x.len() != len) {
        Some(i) => Err(format!(
            "input {i} has {} values, expected {len}",
            inputs[i].len()
        )),
        None => Ok(()),
    }
}

/// Calls `f(rows, out_rows)` over the output rows `0..rows`, each `row` floats long: in one
/// call, or in one band per thread when `split`.
fn bands(
    out: &mut [f32],
    rows: usize,
    row: usize,
    split: bool,
    f: impl Fn(Range<usize>, &mut [f32]) + Sync,
) {
    let threads = rayon::current_num_threads().min(rows).max(1);
    if !split || threads == 1 || row == 0 {
        return f(0..rows, out);
    }
    let per = rows.div_ceil(threads);
    team::for_each_item(out.chunks_mut(per * row).collect(), |i, o| {
        f(i * per..i * per + o.len() / row, o)
    });
}

/// `x` into `out` with a border of `p` zero pixels on every side (`(h + 2p) × (w + 2p) × c`).
fn border(x: &Map, p: usize, out: &mut [f32]) {
    let (pw, c) = (x.w + 2 * p, x.c);
    let prow = pw * c;
    out[..p * prow].fill(0.0);
    out[(x.h + p) * prow..].fill(0.0);
    for (dst, src) in out[p * prow..(x.h + p) * prow]
        .chunks_exact_mut(prow)
        .zip(x.data.chunks_exact(x.w * c))
    {
        dst[..p * c].fill(0.0);
        dst[p * c..prow - p * c].copy_from_slice(src);
        dst[prow - p * c..].fill(0.0);
    }
}

/// How a convolution reads its zero-bordered input in place instead of unfolding it.
#[derive(Debug, Clone, Copy)]
enum Shift {
    /// 3×3 stride 1: [`Conv::shifted_rows`].
    Flat,
    /// One product per output row: [`Conv::shifted_by_row`].
    ByRow,
}

/// What a dense convolution's output adds besides the bias.
#[derive(Debug, Clone, Copy)]
enum Shortcut<'a> {
    /// Nothing, or a residual laid out as the output rows.
    In(Option<&'a [f32]>),
    /// What the output rows already hold ([`Conv::run_onto`]).
    Onto,
}

/// The largest kernel [`Shift::ByRow`] takes.
const MAX_K: usize = 7;

/// The input index `o·stride + tap − pad`, if inside `0..len`.
fn input_index(o: usize, tap: usize, stride: usize, pad: usize, len: usize) -> Option<usize> {
    (o * stride + tap).checked_sub(pad).filter(|&i| i < len)
}

/// A dense (groups = 1) or depthwise (groups = channels) convolution with bias, square kernel,
/// the same padding on all sides, and a fused activation.
#[derive(Debug)]
pub(crate) struct Conv {
    cin: usize,
    cout: usize,
    k: usize,
    stride: usize,
    pad: usize,
    weights: Weights,
    act: Activation,
}

/// A convolution's weights and bias, as its kind of convolution reads them.
#[derive(Debug)]
enum Weights {
    /// `[k·k·cin, cout]`, rows ordered (ky, kx, input channel), packed with the bias for the
    /// product.
    Dense(PackedB),
    Depthwise(Depthwise),
}

#[derive(Debug)]
struct Depthwise {
    /// `[k·k, c]`.
    weight: Vec<f32>,
    bias: Vec<f32>,
}

impl Conv {
    /// From PyTorch's `(cout, cin/groups, k, k)` weight and `(cout)` bias.
    pub fn new(
        weight: &Tensor,
        bias: &Tensor,
        stride: usize,
        pad: usize,
        groups: usize,
        act: Activation,
    ) -> candle_core::Result<Conv> {
        let (cout, cin_g, k, k2) = weight.dims4()?;
        let depthwise = match groups {
            1 => false,
            g if g == cout && cin_g == 1 => true,
            _ => candle_core::bail!("only dense and depthwise convolutions run on the CPU engine"),
        };
        if k != k2 || stride == 0 {
            candle_core::bail!("only square kernels with a stride run on the CPU engine");
        }
        let w = weight
            .to_dtype(DType::F32)?
            .flatten_all()?
            .to_vec1::<f32>()?;
        let bias = bias.to_dtype(DType::F32)?.to_vec1::<f32>()?;
        if bias.len() != cout {
            candle_core::bail!("bias of {} values for {cout} outputs", bias.len());
        }
        let taps = k * k;
        let mut packed = vec![0f32; w.len()];
        let cin = if depthwise { cout } else { cin_g };
        if depthwise {
            for c in 0..cout {
                for t in 0..taps {
                    packed[t * cout + c] = w[c * taps + t];
                }
            }
        } else {
            for co in 0..cout {
                for ci in 0..cin {
                    for t in 0..taps {
                        packed[(t * cin + ci) * cout + co] = w[(co * cin + ci) * taps + t];
                    }
                }
            }
        }
        let weights = if depthwise {
            Weights::Depthwise(Depthwise {
                weight: packed,
                bias,
            })
        } else {
            Weights::Dense(PackedB::new(&packed, &bias, taps * cin, cout))
        };
        Ok(Conv {
            cin,
            cout,
            k,
            stride,
            pad,
            weights,
            act,
        })
    }

    /// The kernels' epilogue: the activation (the bias is always added; a residual is passed
    /// on its own, or `add_c` when it is already in the output).
    fn epilogue(&self) -> Epilogue {
        Epilogue {
            add_c: false,
            clamp: self.act.clamp(),
        }
    }

    /// `acc = act(conv(x) + bias + acc)`: a block's last convolution adding its output onto the
    /// shortcut in place. The shortcut's lines are then written where they were just read,
    /// instead of read from one map and written to another that misses the cache too (a
    /// 32-deep 1×1 onto a 56×56×128 map ran at half the speed of the others: too few steps
    /// per output to hide two streams of misses). Dense convolutions only.
    pub fn run_onto(&self, x: &Map, acc: &mut Map, split: bool) {
        let Weights::Dense(w) = &self.weights else {
            panic!("run_onto takes a dense convolution");
        };
        assert_eq!(x.c, self.cin, "input channels");
        let (ho, wo) = (self.out_len(x.h), self.out_len(x.w));
        assert_eq!((acc.h, acc.w, acc.c), (ho, wo, self.cout), "shortcut shape");
        let row = wo * self.cout;
        let parts = self.column_parts(ho, wo, split);
        bands(&mut acc.data, ho, row, split && parts == 1, |rows, o| {
            self.dense_rows(w, x, o, rows, wo, Shortcut::Onto, parts)
        });
    }

    fn out_len(&self, len: usize) -> usize {
        (len + 2 * self.pad).saturating_sub(self.k) / self.stride + 1
    }

    /// `out = act(conv(x) + bias + residual)`; `split` spreads the output rows over the pool.
    pub fn run(&self, x: &Map, out: &mut Map, residual: Option<&Map>, split: bool) {
        assert_eq!(x.c, self.cin, "input channels");
        assert!(
            x.h + 2 * self.pad >= self.k && x.w + 2 * self.pad >= self.k,
            "image smaller than the kernel"
        );
        let (ho, wo) = (self.out_len(x.h), self.out_len(x.w));
        out.shape(ho, wo, self.cout);
        let row = wo * self.cout;
        if let Some(r) = residual {
            assert_eq!((r.h, r.w, r.c), (ho, wo, self.cout), "residual shape");
        }
        if let (Weights::Dense(w), Some(shift)) = (&self.weights, self.shift(x, residual)) {
            let (p, cin) = (self.pad, self.cin);
            let pw = x.w + 2 * p;
            return with_buffer(&BORDERED, (x.h + 2 * p) * pw * cin, |bordered| {
                border(x, p, bordered);
                let bordered = &*bordered;
                bands(&mut out.data, ho, row, split, |rows, o| match shift {
                    Shift::Flat => self.shifted_rows(w, bordered, pw, o, rows, wo),
                    Shift::ByRow => self.shifted_by_row(w, bordered, pw, o, rows, wo),
                });
            });
        }
        let parts = match self.weights {
            Weights::Dense(_) => self.column_parts(ho, wo, split),
            Weights::Depthwise(_) => 1,
        };
        bands(&mut out.data, ho, row, split && parts == 1, |rows, o| {
            let res = residual.map(|r| &r.data[rows.start * row..rows.end * row]);
            match &self.weights {
                Weights::Depthwise(dw) => self.depthwise_rows(dw, x, o, rows, wo, res),
                Weights::Dense(w) => self.dense_rows(w, x, o, rows, wo, Shortcut::In(res), parts),
            }
        });
    }

    /// Over how many tasks a split dense convolution shares out its columns (1: its rows
    /// instead). Columns where the rows would not split evenly over the pool (a 7×7 map's 4 /
    /// 3) or where there are more outputs a pixel than pixels: each thread then reads its
    /// share of the weights, not all of them, and the map (the smaller operand) twice.
    fn column_parts(&self, ho: usize, wo: usize, split: bool) -> usize {
        let threads = rayon::current_num_threads();
        let columns = !ho.is_multiple_of(threads) || self.cout >= ho * wo;
        if split && threads > 1 && columns {
            threads
        } else {
            1
        }
    }

    /// Output rows `rows` of a dense convolution, each product's columns shared out over
    /// `parts` tasks.
    #[allow(clippy::too_many_arguments)]
    fn dense_rows(
        &self,
        w: &PackedB,
        x: &Map,
        o: &mut [f32],
        rows: Range<usize>,
        wo: usize,
        shortcut: Shortcut<'_>,
        parts: usize,
    ) {
        let depth = self.k * self.k * self.cin;
        let (residual, epi) = match shortcut {
            Shortcut::In(r) => (r, self.epilogue()),
            Shortcut::Onto => (
                None,
                Epilogue {
                    add_c: true,
                    ..self.epilogue()
                },
            ),
        };
        let direct = self.k == 1 && self.stride == 1 && self.pad == 0;
        let row = wo * self.cout;
        let per = (CHUNK_FLOATS / (wo * (depth + self.cout)).max(1)).max(1);
        for (i, chunk) in o.chunks_mut(per * row).enumerate() {
            let first = rows.start + i * per;
            let n = chunk.len() / row;
            let pixels = n * wo;
            let res = residual.map(|r| &r[i * per * row..][..n * row]);
            if direct {
                let a = &x.data[first * wo * self.cin..][..pixels * self.cin];
                let a = Lhs::rows(a, depth, depth);
                w.product_split(chunk, self.cout, a, pixels, epi, res, parts);
            } else {
                with_buffer(&SCRATCH, pixels * depth, |cols| {
                    self.unfold(x, first..first + n, wo, cols);
                    let a = Lhs::rows(cols, depth, depth);
                    w.product_split(chunk, self.cout, a, pixels, epi, res, parts);
                });
            }
        }
    }

    /// Whether (and how) this convolution reads a zero-bordered copy of `x` in place instead of
    /// unfolded chunks, without a residual: a 3×3, stride-1, pad-1 one on a map wide enough
    /// that the two border columns each output row computes and drops stay a small share
    /// ([`Shift::Flat`]), or a wide one with few input channels ([`Shift::ByRow`]).
    fn shift(&self, x: &Map, residual: Option<&Map>) -> Option<Shift> {
        if residual.is_some() || self.k == 1 {
            return None;
        }
        let flat = self.k == 3 && self.stride == 1 && self.pad == 1 && x.w >= SHIFTED_MIN_W;
        // Few input channels and a wide output (open_nsfw's 7×7 stem, MobileNetV2's 3×3 one):
        // the unfolded copy is k·k values per output value of a thin product, and the kernel
        // rows' k·cin values each run in one pass of the kernels (MobileNetV2's stem, one
        // image a core of a Zen 3: 1.08-1.31 ms unfolded -> 0.80-0.86 by rows).
        let by_row = self.k * self.cin >= 9 && self.cin <= 4 && self.out_len(x.w) >= 56;
        if flat {
            Some(Shift::Flat)
        } else if by_row && self.k <= MAX_K {
            Some(Shift::ByRow)
        } else {
            None
        }
    }

    /// Output rows `rows` of a k×k convolution (any stride) from `bordered`, the input with a
    /// border of `pad` zeros (`pw` pixels a row): one product per output row, whose pixels
    /// read each kernel row's `k·cin` values `stride·cin` apart in the bordered row.
    fn shifted_by_row(
        &self,
        w: &PackedB,
        bordered: &[f32],
        pw: usize,
        o: &mut [f32],
        rows: Range<usize>,
        wo: usize,
    ) {
        let (k, s, cin, cout) = (self.k, self.stride, self.cin, self.cout);
        let mut taps = [0usize; MAX_K];
        for (ky, t) in taps[..k].iter_mut().enumerate() {
            *t = ky * pw * cin;
        }
        let epi = self.epilogue();
        for (orow, oy) in o.chunks_exact_mut(wo * cout).zip(rows) {
            let a = Lhs {
                data: &bordered[oy * s * pw * cin..],
                lda: s * cin,
                taps: &taps[..k],
                seg: k * cin,
            };
            w.product(orow, cout, a, wo, epi, None);
        }
    }

    /// Output rows `rows` of a 3×3 stride-1 convolution from `bordered`, the input with a
    /// border of zeros (`pw = w + 2` pixels a row). Output pixel (y, x) reads bordered pixels
    /// (y + ky, x + kx), so over the bordered map's pixels in order each kernel row is one
    /// matrix (`3·cin` values a row, rows `cin` apart) at a fixed offset: the product reads the
    /// input where it lies, for `pw` outputs a row of which the last two are dropped.
    fn shifted_rows(
        &self,
        w: &PackedB,
        bordered: &[f32],
        pw: usize,
        o: &mut [f32],
        rows: Range<usize>,
        wo: usize,
    ) {
        let (cin, cout) = (self.cin, self.cout);
        // A kernel row's three taps are neighbouring pixels: one run of 3·cin values.
        let taps: [usize; 3] = std::array::from_fn(|ky| ky * pw * cin);
        let row = wo * cout;
        let per = (SHIFTED_CHUNK_FLOATS / (pw * (cin + cout))).max(1);
        let epi = self.epilogue();
        for (i, chunk) in o.chunks_mut(per * row).enumerate() {
            let first = rows.start + i * per;
            let n = chunk.len() / row;
            // The last output row's two dropped pixels would read past the map's end.
            let m = n * pw - 2;
            let a = Lhs {
                data: &bordered[first * pw * cin..],
                lda: cin,
                taps: &taps,
                seg: 3 * cin,
            };
            with_buffer(&SCRATCH, n * pw * cout, |flat| {
                w.product(flat, cout, a, m, epi, None);
                for (dst, src) in chunk.chunks_exact_mut(row).zip(flat.chunks(pw * cout)) {
                    dst.copy_from_slice(&src[..row]);
                }
            });
        }
    }

    /// Output rows `rows` as `[pixels, k·k·cin]`: each row holds what the kernel sees (0 in
    /// the padding).
    fn unfold(&self, x: &Map, rows: Range<usize>, wo: usize, cols: &mut [f32]) {
        let (k, s, p, c) = (self.k, self.stride, self.pad, self.cin);
        let depth = k * k * c;
        for (i, oy) in rows.enumerate() {
            for ox in 0..wo {
                let dst = &mut cols[(i * wo + ox) * depth..][..depth];
                // The kernel columns inside the image: kx in lo..hi.
                let lo = p.saturating_sub(ox * s).min(k);
                let hi = (x.w + p).saturating_sub(ox * s).clamp(lo, k);
                for ky in 0..k {
                    let d = &mut dst[ky * k * c..][..k * c];
                    let Some(iy) = input_index(oy, ky, s, p, x.h) else {
                        d.fill(0.0);
                        continue;
                    };
                    d[..lo * c].fill(0.0);
                    d[hi * c..].fill(0.0);
                    if hi > lo {
                        let ix = ox * s + lo - p;
                        d[lo * c..hi * c]
                            .copy_from_slice(&x.data[(iy * x.w + ix) * c..][..(hi - lo) * c]);
                    }
                }
            }
        }
    }

    /// Depthwise output rows, bias, residual and activation included: each pixel's channels
    /// in blocks of [`LANES`] accumulated in registers over the kernel taps, stored once.
    fn depthwise_rows(
        &self,
        dw: &Depthwise,
        x: &Map,
        o: &mut [f32],
        rows: Range<usize>,
        wo: usize,
        residual: Option<&[f32]>,
    ) {
        let (k, s, p, c) = (self.k, self.stride, self.pad, self.cout);
        // (input offset, weight offset) of each kernel tap inside the image.
        let mut taps: Vec<(usize, usize)> = Vec::with_capacity(k * k);
        let fast = k == 3 && depthwise3x3::available(c);
        // Output pixels whose three horizontal taps all lie inside the input row.
        let first = p.div_ceil(s).min(wo);
        let interior = first..((x.w + p).saturating_sub(3) / s + 1).clamp(first, wo);
        for (i, (orow, oy)) in o.chunks_exact_mut(wo * c).zip(rows).enumerate() {
            let res_row = residual.map(|r| &r[i * wo * c..][..wo * c]);
            if fast {
                let iy = |ky| input_index(oy, ky, s, p, x.h);
                let any = (0..3).find_map(iy).expect("a kernel row inside the image");
                let input_row = |ky| {
                    let y = iy(ky).unwrap_or(any);
                    &x.data[y * x.w * c..][..x.w * c]
                };
                let row = depthwise3x3::Row3 {
                    input: [input_row(0), input_row(1), input_row(2)],
                    valid: [iy(0).is_some(), iy(1).is_some(), iy(2).is_some()],
                    weight: &dw.weight,
                    bias: &dw.bias,
                    residual: res_row,
                    c,
                    stride: s,
                    pad: p,
                    clamp: self.act.clamp(),
                };
                depthwise3x3::interior(&row, interior.clone(), orow);
            }
            let (left, right) = if fast {
                (0..first, interior.end..wo)
            } else {
                (0..wo, wo..wo)
            };
            for ox in left.chain(right) {
                let px = &mut orow[ox * c..][..c];
                taps.clear();
                for ky in 0..k {
                    let Some(iy) = input_index(oy, ky, s, p, x.h) else {
                        continue;
                    };
                    for kx in 0..k {
                        if let Some(ix) = input_index(ox, kx, s, p, x.w) {
                            taps.push(((iy * x.w + ix) * c, (ky * k + kx) * c));
                        }
                    }
                }
                let res = res_row.map(|r| &r[ox * c..][..c]);
                for cb in (0..c).step_by(LANES) {
                    if cb + LANES <= c {
                        let out = &mut px[cb..cb + LANES];
                        self.depthwise_block(dw, &x.data, &taps, cb, out, res);
                    } else {
                        self.depthwise_channels(dw, &x.data, &taps, cb, &mut px[cb..], res);
                    }
                }
            }
        }
    }

    /// Channels `cb..cb + LANES` of one output pixel, accumulated in a fixed-size block (so
    /// that they stay in registers over the taps).
    fn depthwise_block(
        &self,
        dw: &Depthwise,
        x: &[f32],
        taps: &[(usize, usize)],
        cb: usize,
        out: &mut [f32],
        residual: Option<&[f32]>,
    ) {
        let mut acc = [0f32; LANES];
        self.depthwise_channels(dw, x, taps, cb, &mut acc, residual);
        out.copy_from_slice(&acc);
    }

    /// Channels `cb..cb + acc.len()` of one output pixel into `acc`: bias (+ residual), every
    /// tap's input times its weights, then the activation. Inlined, so that a block's fixed
    /// length reaches the loops.
    #[inline(always)]
    fn depthwise_channels(
        &self,
        dw: &Depthwise,
        x: &[f32],
        taps: &[(usize, usize)],
        cb: usize,
        acc: &mut [f32],
        residual: Option<&[f32]>,
    ) {
        let n = acc.len();
        acc.copy_from_slice(&dw.bias[cb..cb + n]);
        if let Some(r) = residual {
            for (a, v) in acc.iter_mut().zip(&r[cb..cb + n]) {
                *a += v;
            }
        }
        for &(xi, wi) in taps {
            let (v, w) = (&x[xi + cb..xi + cb + n], &dw.weight[wi + cb..wi + cb + n]);
            for (a, (v, w)) in acc.iter_mut().zip(v.iter().zip(w)) {
                *a += v * w;
            }
        }
        self.act.apply_all(acc);
    }
}

/// Max pooling with a `k × k` window and a stride, windows reaching up to `pad_end` past the
/// bottom and right edges; taps outside the image are ignored (the same as padding by
/// repeating the edge).
pub(crate) fn max_pool(
    x: &Map,
    out: &mut Map,
    k: usize,
    stride: usize,
    pad_end: usize,
    split: bool,
) {
    let len = |n: usize| (n + pad_end).saturating_sub(k) / stride + 1;
    let (ho, wo, c) = (len(x.h), len(x.w), x.c);
    out.shape(ho, wo, c);
    bands(&mut out.data, ho, wo * c, split, |rows, o| {
        for (orow, oy) in o.chunks_exact_mut(wo * c).zip(rows) {
            for (ox, px) in orow.chunks_exact_mut(c).enumerate() {
                px.fill(f32::NEG_INFINITY);
                for ky in 0..k {
                    let Some(iy) = input_index(oy, ky, stride, 0, x.h) else {
                        continue;
                    };
                    for kx in 0..k {
                        let Some(ix) = input_index(ox, kx, stride, 0, x.w) else {
                            continue;
                        };
                        let src = &x.data[(iy * x.w + ix) * c..][..c];
                        for (d, &v) in px.iter_mut().zip(src) {
                            *d = d.max(v);
                        }
                    }
                }
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use candle_core::{Device, Module, Tensor};
    use candle_nn::{Conv2d, Conv2dConfig};

    use super::*;

    fn map_of(t: &Tensor) -> Map {
        let (c, h, w) = t.dims3().unwrap();
        let mut m = Map::default();
        m.load_chw(&t.flatten_all().unwrap().to_vec1().unwrap(), c, h, w);
        m
    }

    fn max_diff(ours: &Map, theirs: &Tensor) -> f32 {
        let expected = map_of(theirs);
        assert_eq!(
            (ours.h, ours.w, ours.c),
            (expected.h, expected.w, expected.c)
        );
        ours.data
            .iter()
            .zip(&expected.data)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f32::max)
    }

    /// Every path (1×1 direct, 1×1 strided, k×k unfolded with padding, 7×7 with 3 input
    /// channels, depthwise strided and not; each activation; with and without a residual, and
    /// a dense one added onto the shortcut in place;
    /// whole image and split over a team) against candle's conv2d on random data.
    #[test]
    fn matches_candles_conv2d() {
        let dev = Device::Cpu;
        use Activation::{None as Linear, Relu, Relu6};
        let cases = [
            (8, 16, 1, 1, 0, 1, Linear),
            (8, 16, 3, 1, 1, 1, Relu),
            (8, 16, 3, 2, 1, 1, Relu6),
            (3, 8, 7, 2, 3, 1, Relu),
            (16, 16, 3, 1, 1, 16, Relu6),
            (16, 16, 3, 2, 1, 16, Linear),
            (12, 12, 5, 2, 2, 12, Relu),
            (8, 16, 1, 2, 0, 1, Relu),
            (4, 4, 3, 1, 0, 4, Linear),
            (5, 7, 3, 1, 0, 1, Relu6),
            // Depthwise 3×3 without padding (all on the vector rows, where the CPU has them).
            (48, 48, 3, 2, 0, 48, Relu),
            // Depthwise over a block of LANES channels plus a tail (the edge pixels; the
            // interior on the AVX2 rows, and on the generic loop with AVX-512).
            (40, 40, 3, 1, 1, 40, Relu6),
            (40, 40, 3, 2, 1, 40, Linear),
            // Depthwise 3×3 with channels no vector row takes: all on the generic loop.
            (20, 20, 3, 1, 1, 20, Relu),
        ];
        // On wider maps: the shifted 3×3 (without a residual) with a tap deeper than one block
        // of the kernels and a partial panel of outputs, and the 7×7 and 3×3 stride-2 stems by
        // rows.
        let wide = [
            (136, 40, 3, 1, 1, 1, Relu),
            (16, 32, 3, 1, 1, 1, Relu6),
            (3, 64, 7, 2, 3, 1, Relu),
            (3, 32, 3, 2, 1, 1, Relu6),
        ];
        let sized = cases.iter().map(|&c| (c, 15, 14));
        for ((cin, cout, k, stride, padding, groups, act), h, width) in
            sized.chain(wide.iter().map(|&c| (c, 31, 114)))
        {
            let x = Tensor::randn(0f32, 1.0, (1, cin, h, width), &dev).unwrap();
            let w = Tensor::randn(0f32, 1.0, (cout, cin / groups, k, k), &dev).unwrap();
            let b = Tensor::randn(0f32, 1.0, cout, &dev).unwrap();
            let cfg = Conv2dConfig {
                padding,
                stride,
                dilation: 1,
                groups,
                cudnn_fwd_algo: None,
            };
            let y = Conv2d::new(w.clone(), Some(b.clone()), cfg)
                .forward(&x)
                .unwrap();
            let r = y.randn_like(0.0, 1.0).unwrap();
            let conv = Conv::new(&w, &b, stride, padding, groups, act).unwrap();
            let input = map_of(&x.squeeze(0).unwrap());
            let residual = map_of(&r.squeeze(0).unwrap());
            for (with_residual, split) in
                [(false, false), (true, false), (false, true), (true, true)]
            {
                let mut out = Map::default();
                // Inside a team, as an image at batch 1 runs (split or not, every layer).
                let res = with_residual.then_some(&residual);
                team::with_team(|| conv.run(&input, &mut out, res, split));
                let expected = if with_residual {
                    (&y + &r).unwrap()
                } else {
                    y.clone()
                };
                let expected = match act {
                    Activation::None => expected,
                    Activation::Relu => expected.relu().unwrap(),
                    Activation::Relu6 => expected.clamp(0f32, 6f32).unwrap(),
                };
                let d = max_diff(&out, &expected.squeeze(0).unwrap());
                assert!(
                    d < 1e-3,
                    "case {cin},{cout},{k},{stride},{padding},{groups} residual {with_residual} split {split}: {d}"
                );
                if with_residual && groups == 1 {
                    let mut acc = residual.clone();
                    team::with_team(|| conv.run_onto(&input, &mut acc, split));
                    let d = max_diff(&acc, &expected.squeeze(0).unwrap());
                    assert!(
                        d < 1e-3,
                        "case {cin},{cout},{k},{stride},{padding} onto the shortcut, split {split}: {d}"
                    );
                }
            }
        }
    }

    /// open_nsfw's pool: edge-padded by one at the bottom and right, then 3×3 stride 2.
    #[test]
    fn max_pool_matches_candle_with_edge_padding() {
        let dev = Device::Cpu;
        for (h, w) in [(112, 112), (9, 8), (4, 5)] {
            let x = Tensor::randn(0f32, 1.0, (1, 6, h, w), &dev).unwrap();
            let expected = x
                .pad_with_same(3, 0, 1)
                .unwrap()
                .pad_with_same(2, 0, 1)
                .unwrap()
                .max_pool2d_with_stride(3, 2)
                .unwrap();
            for split in [false, true] {
                let mut out = Map::default();
                max_pool(&map_of(&x.squeeze(0).unwrap()), &mut out, 3, 2, 1, split);
                assert_eq!(
                    max_diff(&out, &expected.squeeze(0).unwrap()),
                    0.0,
                    "{h}x{w}"
                );
            }
        }
    }

    #[test]
    fn batch_keeps_the_order_of_images() {
        let images: Vec<Vec<f32>> = (0..7).map(|i| vec![i as f32; 3]).collect();
        let got = batch(&images, |x, _, _| x[0] as usize);
        assert_eq!(got, (0..7).collect::<Vec<_>>());
    }
}
