//! The inner loop of a 3×3 depthwise convolution: one output row's interior pixels (every
//! horizontal tap inside the image), one vector of channels at a time (16 on AVX-512, 8 on
//! AVX2 + FMA), with the channel block's nine weights and its bias held in registers across the
//! row. The generic loop reloads every weight for every pixel (two loads per multiply-add).

use crate::packed_gemm::Isa;

/// One output row of a 3×3 depthwise convolution.
pub(crate) struct Row3<'a> {
    /// The three input rows the kernel covers (`w · c` values each); a row outside the image
    /// is given as any real row with `valid` false (its taps are skipped).
    pub input: [&'a [f32]; 3],
    pub valid: [bool; 3],
    /// `[9, c]`: tap (ky, kx) at `(ky·3 + kx)·c`.
    pub weight: &'a [f32],
    pub bias: &'a [f32],
    /// This output row's residual (`wo · c`), if any.
    pub residual: Option<&'a [f32]>,
    pub c: usize,
    pub stride: usize,
    pub pad: usize,
    pub clamp: Option<(f32, f32)>,
}

/// Whether [`interior`] runs on this CPU for `c` channels.
pub(crate) fn available(c: usize) -> bool {
    match Isa::detect() {
        Isa::Avx512 => c.is_multiple_of(16),
        Isa::Avx2 => c.is_multiple_of(8),
        Isa::Plain => false,
    }
}

/// Output pixels `ox` of `row` into `out` (the output row, `wo · c`). Every pixel's horizontal
/// taps must lie inside the input row, and [`available`] must hold.
pub(crate) fn interior(row: &Row3<'_>, ox: std::ops::Range<usize>, out: &mut [f32]) {
    let c = row.c;
    assert!(
        available(c),
        "no depthwise kernel runs here for {c} channels"
    );
    let w = row.input[0].len() / c;
    assert!(row.input.iter().all(|r| r.len() == w * c), "input rows");
    assert!(row.weight.len() == 9 * c && row.bias.len() == c, "weights");
    if ox.is_empty() {
        return;
    }
    assert!(
        ox.start * row.stride >= row.pad && (ox.end - 1) * row.stride + 3 <= w + row.pad,
        "pixels {ox:?} reach outside the input row"
    );
    assert!(out.len() >= ox.end * c, "output row");
    if let Some(r) = row.residual {
        assert!(r.len() >= ox.end * c, "residual row");
    }
    #[cfg(target_arch = "x86_64")]
    // SAFETY: the asserts above bound every address the kernel touches (see its contract);
    // the kernel's features were detected by `available`, whose channel multiple it needs.
    #[allow(unsafe_code)]
    unsafe {
        match Isa::detect() {
            Isa::Avx512 => kernels::avx512(row, ox, out),
            _ => kernels::avx2(row, ox, out),
        }
    };
}

#[cfg(target_arch = "x86_64")]
#[allow(unsafe_code)]
mod kernels {
    use super::Row3;
    use crate::simd_sets::{with_avx2, with_avx512};

    /// One kernel per vector width: 13 registers (nine weights, the bias, the sum and the
    /// clamp bounds), which fits AVX2's 16.
    macro_rules! row3 {
        ($name:ident, $feature:literal, $lanes:literal, $load:path, $store:path, $fma:path,
         $add:path, $max:path, $min:path, $set1:path, $zero:path) => {
            /// # Safety
            /// The asserts in [`super::interior`] must hold, `row.c` must be a multiple of the
            /// vector width, and the CPU must have the kernel's features.
            #[target_feature(enable = $feature)]
            pub unsafe fn $name(row: &Row3<'_>, ox: std::ops::Range<usize>, out: &mut [f32]) {
                let (c, s) = (row.c, row.stride);
                // SAFETY: pixel ox reads input columns ox·s − pad + {0, 1, 2} < w and channels
                // cb..cb + LANES ≤ c of rows of w·c values; writes (and reads the residual at)
                // ox·c + cb + LANES ≤ ox.end·c; all asserted by the caller.
                unsafe {
                    let wp = row.weight.as_ptr();
                    let rows = row.input.map(|r| r.as_ptr());
                    let zero = $zero();
                    let (lo, hi) = row.clamp.unwrap_or((f32::NEG_INFINITY, f32::INFINITY));
                    let (lo, hi) = ($set1(lo), $set1(hi));
                    for cb in (0..c).step_by($lanes) {
                        // Rows outside the image contribute nothing: their weights are zero.
                        let tap = |ky: usize, kx: usize| {
                            if row.valid[ky] {
                                $load(wp.add((ky * 3 + kx) * c + cb))
                            } else {
                                zero
                            }
                        };
                        let (w00, w01, w02) = (tap(0, 0), tap(0, 1), tap(0, 2));
                        let (w10, w11, w12) = (tap(1, 0), tap(1, 1), tap(1, 2));
                        let (w20, w21, w22) = (tap(2, 0), tap(2, 1), tap(2, 2));
                        let bias = $load(row.bias.as_ptr().add(cb));
                        for x in ox.clone() {
                            let at = (x * s - row.pad) * c + cb;
                            let (r0, r1, r2) = (rows[0].add(at), rows[1].add(at), rows[2].add(at));
                            let mut acc = match row.residual {
                                Some(r) => $add(bias, $load(r.as_ptr().add(x * c + cb))),
                                None => bias,
                            };
                            acc = $fma($load(r0), w00, acc);
                            acc = $fma($load(r0.add(c)), w01, acc);
                            acc = $fma($load(r0.add(2 * c)), w02, acc);
                            acc = $fma($load(r1), w10, acc);
                            acc = $fma($load(r1.add(c)), w11, acc);
                            acc = $fma($load(r1.add(2 * c)), w12, acc);
                            acc = $fma($load(r2), w20, acc);
                            acc = $fma($load(r2.add(c)), w21, acc);
                            acc = $fma($load(r2.add(2 * c)), w22, acc);
                            acc = $min($max(acc, lo), hi);
                            $store(out.as_mut_ptr().add(x * c + cb), acc);
                        }
                    }
                }
            }
        };
    }

    with_avx512!(row3, avx512);
    with_avx2!(row3, avx2);
}
