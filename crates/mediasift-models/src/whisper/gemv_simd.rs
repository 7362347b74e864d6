//! The inner loop of [`super::gemv`] for x86-64 with AVX2, FMA and F16C (our x86-64-v3 build):
//! one weight row against up to 8 input rows, each weight loaded (and widened from f16) once,
//! with enough independent FMA chains to hide their latency, and the accumulators in registers
//! (an earlier version indexed a nested array of them, which the compiler kept on the stack:
//! a store and reload per FMA, 3–5× slower).

use std::arch::x86_64::{
    __m256, _mm_loadu_si128, _mm256_add_ps, _mm256_cvtph_ps, _mm256_fmadd_ps, _mm256_loadu_ps,
    _mm256_setzero_ps, _mm256_storeu_ps,
};

use half::f16;

/// A weight element type: 8 at a time as f32 lanes.
#[allow(unsafe_code)]
pub trait Weight: Copy + Send + Sync {
    /// # Safety
    /// `p` must point to 8 readable elements.
    unsafe fn load8(p: *const Self) -> __m256;
    fn widen(self) -> f32;
}

impl Weight for f32 {
    #[inline(always)]
    #[allow(unsafe_code)]
    unsafe fn load8(p: *const f32) -> __m256 {
        // SAFETY: the caller guarantees 8 readable f32 at `p`; AVX is enabled at compile time.
        unsafe { _mm256_loadu_ps(p) }
    }
    fn widen(self) -> f32 {
        self
    }
}

impl Weight for f16 {
    #[inline(always)]
    #[allow(unsafe_code)]
    unsafe fn load8(p: *const f16) -> __m256 {
        // SAFETY: the caller guarantees 8 readable f16 (16 bytes) at `p`; F16C is enabled at
        // compile time.
        unsafe { _mm256_cvtph_ps(_mm_loadu_si128(p.cast())) }
    }
    fn widen(self) -> f32 {
        self.to_f32()
    }
}

/// Horizontal sum of 8 lanes.
#[inline(always)]
#[allow(unsafe_code)]
fn sum8(v: __m256) -> f32 {
    let mut lanes = [0f32; 8];
    // SAFETY: `lanes` holds 8 f32.
    unsafe { _mm256_storeu_ps(lanes.as_mut_ptr(), v) };
    lanes.iter().sum()
}

/// `Σ_i w[i]·x[i]` with four independent FMA chains.
#[inline(always)]
#[allow(unsafe_code)]
pub fn dot1<T: Weight>(w: &[T], x: &[f32]) -> f32 {
    let n = w.len();
    assert!(x.len() >= n, "input row shorter than the weight row");
    let body = n / 32 * 32;
    // SAFETY: every load reads 8 elements starting below `body` ≤ n in `w` and `x`; the
    // features are enabled at compile time (see the module's cfg).
    let mut sum = unsafe {
        let (mut a0, mut a1, mut a2, mut a3) = (
            _mm256_setzero_ps(),
            _mm256_setzero_ps(),
            _mm256_setzero_ps(),
            _mm256_setzero_ps(),
        );
        let (wp, xp) = (w.as_ptr(), x.as_ptr());
        let mut i = 0;
        while i < body {
            a0 = _mm256_fmadd_ps(T::load8(wp.add(i)), _mm256_loadu_ps(xp.add(i)), a0);
            a1 = _mm256_fmadd_ps(T::load8(wp.add(i + 8)), _mm256_loadu_ps(xp.add(i + 8)), a1);
            a2 = _mm256_fmadd_ps(
                T::load8(wp.add(i + 16)),
                _mm256_loadu_ps(xp.add(i + 16)),
                a2,
            );
            a3 = _mm256_fmadd_ps(
                T::load8(wp.add(i + 24)),
                _mm256_loadu_ps(xp.add(i + 24)),
                a3,
            );
            i += 32;
        }
        sum8(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)))
    };
    for i in body..n {
        sum += w[i].widen() * x[i];
    }
    sum
}

/// `[Σ_i w[i]·x[r·n + i] for r in 0..R]`: each 8 weights loaded once for the R rows, whose
/// chains are independent.
#[inline(always)]
#[allow(unsafe_code)]
pub fn dots<T: Weight, const R: usize>(w: &[T], x: &[f32]) -> [f32; R] {
    let n = w.len();
    assert!(x.len() >= R * n, "input rows shorter than the weight row");
    let body = n / 8 * 8;
    let mut out = [0f32; R];
    // SAFETY: every load reads 8 elements starting at i < body ≤ n of `w`, or at r·n + i with
    // r < R of `x` (x.len() ≥ R·n, asserted above); the features are enabled at compile time.
    unsafe {
        let mut acc = [_mm256_setzero_ps(); R];
        let (wp, xp) = (w.as_ptr(), x.as_ptr());
        let mut i = 0;
        while i < body {
            let wv = T::load8(wp.add(i));
            for (r, a) in acc.iter_mut().enumerate() {
                *a = _mm256_fmadd_ps(wv, _mm256_loadu_ps(xp.add(r * n + i)), *a);
            }
            i += 8;
        }
        for (o, a) in out.iter_mut().zip(acc) {
            *o = sum8(a);
        }
    }
    for i in body..n {
        let wv = w[i].widen();
        for (r, o) in out.iter_mut().enumerate() {
            *o += wv * x[r * n + i];
        }
    }
    out
}

/// Writes `outs[j·rows + r] = w_row(o0 + j) · x_r + bias` for the weight rows of a block.
pub fn block<T: Weight>(
    weights: &[T],
    xs: &[f32],
    rows: usize,
    in_dim: usize,
    first: usize,
    bias: Option<&[f32]>,
    outs: &mut [f32],
) {
    let bias_of = |o: usize| bias.map_or(0.0, |b| b[o]);
    let row = |o: usize| &weights[o * in_dim..(o + 1) * in_dim];
    macro_rules! run {
        ($r:literal) => {
            for (j, slot) in outs.chunks_mut($r).enumerate() {
                let o = first + j;
                let d = dots::<T, $r>(row(o), xs);
                for (s, v) in slot.iter_mut().zip(d) {
                    *s = v + bias_of(o);
                }
            }
        };
    }
    match rows {
        1 => {
            for (j, s) in outs.iter_mut().enumerate() {
                *s = dot1(row(first + j), xs) + bias_of(first + j);
            }
        }
        2 => run!(2),
        3 => run!(3),
        4 => run!(4),
        5 => run!(5),
        6 => run!(6),
        7 => run!(7),
        _ => run!(8),
    }
}
