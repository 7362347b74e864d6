//! The inner loop of a 3×3 depthwise convolution on AVX-512: one output row's interior pixels
//! (every horizontal tap inside the image), 16 channels at a time, with the channel block's
//! nine weights and its bias held in registers across the row. The generic loop reloaded every
//! weight for every pixel (two loads per multiply-add) and ran at AVX2 width.

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
    c.is_multiple_of(16) && Isa::detect() == Isa::Avx512
}

/// Output pixels `ox` of `row` into `out` (the output row, `wo · c`). Every pixel's horizontal
/// taps must lie inside the input row, and [`available`] must hold.
pub(crate) fn interior(row: &Row3<'_>, ox: std::ops::Range<usize>, out: &mut [f32]) {
    let c = row.c;
    assert!(
        available(c),
        "the AVX-512 depthwise kernel does not run here"
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
    // AVX-512F was detected by `available`.
    #[allow(unsafe_code)]
    unsafe {
        kernel(row, ox, out)
    };
}

/// # Safety
/// The asserts in [`interior`] must hold and the CPU must have AVX-512F.
#[cfg(target_arch = "x86_64")]
#[allow(unsafe_code)]
#[target_feature(enable = "avx512f")]
unsafe fn kernel(row: &Row3<'_>, ox: std::ops::Range<usize>, out: &mut [f32]) {
    use std::arch::x86_64::{
        _mm512_add_ps, _mm512_fmadd_ps, _mm512_loadu_ps, _mm512_max_ps, _mm512_min_ps,
        _mm512_set1_ps, _mm512_setzero_ps, _mm512_storeu_ps,
    };
    let (c, s) = (row.c, row.stride);
    // SAFETY: pixel ox reads input columns ox·s − pad + {0, 1, 2} < w and channels
    // cb..cb + 16 ≤ c of rows of w·c values; writes (and reads the residual at) ox·c + cb + 16
    // ≤ ox.end·c; all asserted by the caller.
    unsafe {
        let wp = row.weight.as_ptr();
        let rows = row.input.map(|r| r.as_ptr());
        let zero = _mm512_setzero_ps();
        let (lo, hi) = row.clamp.unwrap_or((f32::NEG_INFINITY, f32::INFINITY));
        let (lo, hi) = (_mm512_set1_ps(lo), _mm512_set1_ps(hi));
        for cb in (0..c).step_by(16) {
            // Rows outside the image contribute nothing: their weights are zero.
            let tap = |ky: usize, kx: usize| {
                if row.valid[ky] {
                    _mm512_loadu_ps(wp.add((ky * 3 + kx) * c + cb))
                } else {
                    zero
                }
            };
            let (w00, w01, w02) = (tap(0, 0), tap(0, 1), tap(0, 2));
            let (w10, w11, w12) = (tap(1, 0), tap(1, 1), tap(1, 2));
            let (w20, w21, w22) = (tap(2, 0), tap(2, 1), tap(2, 2));
            let bias = _mm512_loadu_ps(row.bias.as_ptr().add(cb));
            for x in ox.clone() {
                let at = (x * s - row.pad) * c + cb;
                let (r0, r1, r2) = (rows[0].add(at), rows[1].add(at), rows[2].add(at));
                let mut acc = match row.residual {
                    Some(r) => _mm512_add_ps(bias, _mm512_loadu_ps(r.as_ptr().add(x * c + cb))),
                    None => bias,
                };
                acc = _mm512_fmadd_ps(_mm512_loadu_ps(r0), w00, acc);
                acc = _mm512_fmadd_ps(_mm512_loadu_ps(r0.add(c)), w01, acc);
                acc = _mm512_fmadd_ps(_mm512_loadu_ps(r0.add(2 * c)), w02, acc);
                acc = _mm512_fmadd_ps(_mm512_loadu_ps(r1), w10, acc);
                acc = _mm512_fmadd_ps(_mm512_loadu_ps(r1.add(c)), w11, acc);
                acc = _mm512_fmadd_ps(_mm512_loadu_ps(r1.add(2 * c)), w12, acc);
                acc = _mm512_fmadd_ps(_mm512_loadu_ps(r2), w20, acc);
                acc = _mm512_fmadd_ps(_mm512_loadu_ps(r2.add(c)), w21, acc);
                acc = _mm512_fmadd_ps(_mm512_loadu_ps(r2.add(2 * c)), w22, acc);
                acc = _mm512_min_ps(_mm512_max_ps(acc, lo), hi);
                _mm512_storeu_ps(out.as_mut_ptr().add(x * c + cb), acc);
            }
        }
    }
}
