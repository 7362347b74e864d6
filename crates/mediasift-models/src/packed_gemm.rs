//! `c = clamp(a · b + bias (+ c))` for a fixed right-hand side (a layer's weights) packed once
//! at load, in the layout our register-tiled micro-kernels read: AVX-512 (12 rows × 32 columns
//! of `c` in 24 registers) when the CPU has it at run time, AVX2 + FMA (6 × 16) otherwise, and
//! OpenBLAS on anything else.
//!
//! Through OpenBLAS every product repacked the weights (11 % of open_nsfw's time), and our speed
//! hung on OpenBLAS knowing the CPU: Debian's 0.3.21 takes a 5th-generation Xeon (family 6,
//! model 207) for a Prescott and runs SSE3 kernels at a sixth of the AVX-512 speed. Here the
//! weights are packed once, the kernels read the rows of `a` where they lie (packing them too
//! cost 2/3 as much as the products), and the bias, a residual already in `c` and the
//! activation are applied in registers (no passes over `c` before or after).

use gemm::Parallelism;

use crate::slice_gemm::product;

/// Which micro-kernel a packed matrix is laid out for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Isa {
    Avx512,
    Avx2,
    /// Row-major `[k, n]`, multiplied by OpenBLAS.
    Plain,
}

impl Isa {
    /// The best kernel this CPU runs.
    pub fn detect() -> Isa {
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx512f") {
                return Isa::Avx512;
            }
            if std::arch::is_x86_feature_detected!("avx2")
                && std::arch::is_x86_feature_detected!("fma")
            {
                return Isa::Avx2;
            }
        }
        Isa::Plain
    }

    /// (rows, columns) of `c` one micro-kernel call computes.
    fn tile(self) -> (usize, usize) {
        match self {
            Isa::Avx512 => (12, 32),
            Isa::Avx2 => (6, 16),
            Isa::Plain => (1, 1),
        }
    }
}

/// What [`PackedB::apply`] adds to the product and does to the sum.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Epilogue {
    /// Add what `c` holds (a residual, or a partial sum).
    pub add_c: bool,
    /// `min(max(x, lo), hi)`: `(0, ∞)` for a ReLU, `(0, 6)` for ReLU6.
    pub clamp: Option<(f32, f32)>,
}

/// Where one kernel call's sums start, and what happens to them before the store.
struct Start {
    /// One panel's `NR` values added to every row (the bias), or null.
    row: *const f32,
    /// Whether the tile's current `c` is added.
    add_c: bool,
    clamp: Option<(f32, f32)>,
}

/// `(kc, a, lda, b, c, ldc, start)`: one register tile of `c` (rows at stride `ldc`) :=
/// `start` + `a` (rows at stride `lda`) · `b`.
type Kernel = unsafe fn(usize, *const f32, usize, *const f32, *mut f32, usize, &Start);

/// Depth of one pass over `c`: the `KC × NR` block of `b` a pass reads for every row tile
/// stays in L1 (16 KiB).
const BLOCK_FLOATS: usize = 4096;

/// Floats of `a` in one tile pass: `mr · kc` for both kernels (12 · 128 and 6 · 256).
const EDGE_A: usize = 12 * (BLOCK_FLOATS / 32);

/// A `[k, n]` matrix and its `[n]` bias, packed for one [`Isa`]: column panels of `NR`, each
/// `k` rows of `NR` values (zero past `n`), and the bias padded to whole panels.
#[derive(Debug)]
pub(crate) struct PackedB {
    k: usize,
    n: usize,
    isa: Isa,
    data: Vec<f32>,
    bias: Vec<f32>,
}

impl PackedB {
    /// Packs the row-major `[k, n]` matrix `b` and the bias for this CPU's kernel.
    pub fn new(b: &[f32], bias: &[f32], k: usize, n: usize) -> PackedB {
        PackedB::for_isa(b, bias, k, n, Isa::detect())
    }

    /// Packs for `isa` (which the caller knows this CPU runs).
    pub fn for_isa(b: &[f32], bias: &[f32], k: usize, n: usize, isa: Isa) -> PackedB {
        assert_eq!(
            b.len(),
            k * n,
            "matrix of {} values is not {k}×{n}",
            b.len()
        );
        assert_eq!(
            bias.len(),
            n,
            "bias of {} values for {n} columns",
            bias.len()
        );
        if isa == Isa::Plain || k == 0 || n == 0 {
            return PackedB {
                k,
                n,
                isa: Isa::Plain,
                data: b.to_vec(),
                bias: bias.to_vec(),
            };
        }
        let nr = isa.tile().1;
        let panels = n.div_ceil(nr);
        let mut data = vec![0f32; panels * k * nr];
        for (p, panel) in data.chunks_exact_mut(k * nr).enumerate() {
            let cols = nr.min(n - p * nr);
            for (row, dst) in panel.chunks_exact_mut(nr).enumerate() {
                dst[..cols].copy_from_slice(&b[row * n + p * nr..][..cols]);
            }
        }
        let mut padded = vec![0f32; panels * nr];
        padded[..n].copy_from_slice(bias);
        PackedB {
            k,
            n,
            isa,
            data,
            bias: padded,
        }
    }

    /// `c[m, n] = clamp(a[m, k] · b + bias (+ c))`, with `c` and `a` row-major with row strides
    /// `ldc` and `lda`.
    pub fn apply(&self, c: &mut [f32], ldc: usize, a: &[f32], lda: usize, m: usize, epi: Epilogue) {
        let (k, n) = (self.k, self.n);
        if m == 0 || n == 0 {
            return;
        }
        assert!(
            ldc >= n && lda >= k && c.len() >= (m - 1) * ldc + n && a.len() >= (m - 1) * lda + k,
            "product out of bounds"
        );
        let kernel: Kernel = match self.isa {
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 => kernels::tile_avx512,
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => kernels::tile_avx2,
            _ => return self.apply_plain(c, ldc, a, lda, m, epi),
        };
        let (mr, nr) = self.isa.tile();
        let kc_max = (BLOCK_FLOATS / nr).max(1);
        // Partial tiles run on full-size copies: `edge_a` holds a tile's rows of `a` (zero
        // past row `m`), `edge_c` its part of `c`.
        let mut edge_a = [0f32; EDGE_A];
        debug_assert!(mr * kc_max <= EDGE_A);
        let mut edge_c = [0f32; 12 * 32];
        for k0 in (0..k).step_by(kc_max) {
            let kc = kc_max.min(k - k0);
            for p in 0..n.div_ceil(nr) {
                let b = &self.data[(p * k + k0) * nr..][..kc * nr];
                let cols = nr.min(n - p * nr);
                let start = Start {
                    row: if k0 == 0 {
                        self.bias[p * nr..][..nr].as_ptr()
                    } else {
                        std::ptr::null()
                    },
                    add_c: k0 > 0 || epi.add_c,
                    clamp: epi.clamp.filter(|_| k0 + kc == k),
                };
                for t in 0..m.div_ceil(mr) {
                    let rows = mr.min(m - t * mr);
                    let (a_tile, a_stride) = if rows == mr {
                        (&a[t * mr * lda + k0..][..(mr - 1) * lda + kc], lda)
                    } else {
                        let tile = &mut edge_a[..mr * kc];
                        tile.fill(0.0);
                        for r in 0..rows {
                            tile[r * kc..][..kc]
                                .copy_from_slice(&a[(t * mr + r) * lda + k0..][..kc]);
                        }
                        (&edge_a[..mr * kc], kc)
                    };
                    let at = t * mr * ldc + p * nr;
                    if rows == mr && cols == nr {
                        // SAFETY: `a_tile` holds mr rows of kc at stride a_stride, `b` kc·nr
                        // values and `start.row` nr (sliced above); the tile's last element of
                        // `c`, (t·mr + mr − 1)·ldc + p·nr + nr − 1, is at most
                        // (m − 1)·ldc + n − 1 < c.len() (asserted above); the kernel's features
                        // were detected at run time when the ISA was chosen.
                        #[allow(unsafe_code)]
                        unsafe {
                            let c = c.as_mut_ptr().add(at);
                            kernel(kc, a_tile.as_ptr(), a_stride, b.as_ptr(), c, ldc, &start)
                        };
                    } else {
                        let tile = &mut edge_c[..mr * nr];
                        tile.fill(0.0);
                        for r in 0..rows {
                            tile[r * nr..][..cols].copy_from_slice(&c[at + r * ldc..][..cols]);
                        }
                        // SAFETY: as above for `a_tile`, `b` and `start`; `tile` holds mr rows
                        // of nr.
                        #[allow(unsafe_code)]
                        unsafe {
                            let c = tile.as_mut_ptr();
                            kernel(kc, a_tile.as_ptr(), a_stride, b.as_ptr(), c, nr, &start)
                        };
                        for r in 0..rows {
                            c[at + r * ldc..][..cols].copy_from_slice(&tile[r * nr..][..cols]);
                        }
                    }
                }
            }
        }
    }

    /// [`PackedB::apply`] through OpenBLAS, on CPUs without our kernels.
    fn apply_plain(
        &self,
        c: &mut [f32],
        ldc: usize,
        a: &[f32],
        lda: usize,
        m: usize,
        epi: Epilogue,
    ) {
        let n = self.n;
        let rows = || (0..m).map(|i| i * ldc..i * ldc + n);
        for r in rows() {
            let row = &mut c[r];
            if epi.add_c {
                row.iter_mut().zip(&self.bias).for_each(|(d, b)| *d += b);
            } else {
                row.copy_from_slice(&self.bias);
            }
        }
        let w = (&self.data[..], n, 1);
        let dims = (m, n, self.k);
        product(c, ldc, true, (a, lda, 1), w, dims, 1.0, Parallelism::None);
        if let Some((lo, hi)) = epi.clamp {
            for r in rows() {
                c[r].iter_mut().for_each(|v| *v = v.max(lo).min(hi));
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[allow(unsafe_code)]
mod kernels {
    use super::Start;
    use crate::simd_sets::{with_avx2, with_avx512};

    /// One register tile: `c[MR rows, 2 vectors] := start + a · b` over `kc` steps, where `a`
    /// holds `MR` rows of `kc` values at stride `lda` and `b` two vectors per step. The
    /// accumulators are named variables, not an array, so they stay in registers.
    macro_rules! tile {
        ($name:ident, $feature:literal, $lanes:literal, $load:path, $store:path, $fma:path,
         $add:path, $max:path, $min:path, $set1:path, $zero:path,
         [$(($r:literal, $x:ident, $y:ident)),*]) => {
            /// # Safety
            /// `a` must hold `MR` rows of `kc` values at stride `lda`, `b` `kc·2·LANES` values,
            /// `start.row` (unless null) `2·LANES`, and `c` `MR` rows of `2·LANES` values at
            /// stride `ldc`; the CPU must have the kernel's features.
            #[target_feature(enable = $feature)]
            pub unsafe fn $name(
                kc: usize,
                a: *const f32,
                lda: usize,
                b: *const f32,
                c: *mut f32,
                ldc: usize,
                start: &Start,
            ) {
                // SAFETY: every address is inside the regions the caller guarantees.
                unsafe {
                    let (s0, s1) = if start.row.is_null() {
                        ($zero(), $zero())
                    } else {
                        ($load(start.row), $load(start.row.add($lanes)))
                    };
                    $(
                        let (mut $x, mut $y) = (s0, s1);
                    )*
                    if start.add_c {
                        $(
                            $x = $add($x, $load(c.add($r * ldc)));
                            $y = $add($y, $load(c.add($r * ldc + $lanes)));
                        )*
                    }
                    // Four steps per iteration: the row addresses are computed once for all
                    // four (the steps differ by a constant displacement).
                    let mut step = 0;
                    while step + 4 <= kc {
                        let bp = b.add(step * 2 * $lanes);
                        $(
                            let ap = a.add($r * lda + step);
                            let (a0, a1, a2, a3) = (
                                $set1(*ap),
                                $set1(*ap.add(1)),
                                $set1(*ap.add(2)),
                                $set1(*ap.add(3)),
                            );
                            $x = $fma(a0, $load(bp), $x);
                            $y = $fma(a0, $load(bp.add($lanes)), $y);
                            $x = $fma(a1, $load(bp.add(2 * $lanes)), $x);
                            $y = $fma(a1, $load(bp.add(3 * $lanes)), $y);
                            $x = $fma(a2, $load(bp.add(4 * $lanes)), $x);
                            $y = $fma(a2, $load(bp.add(5 * $lanes)), $y);
                            $x = $fma(a3, $load(bp.add(6 * $lanes)), $x);
                            $y = $fma(a3, $load(bp.add(7 * $lanes)), $y);
                        )*
                        step += 4;
                    }
                    while step < kc {
                        let b0 = $load(b.add(step * 2 * $lanes));
                        let b1 = $load(b.add(step * 2 * $lanes + $lanes));
                        let ap = a.add(step);
                        $(
                            let av = $set1(*ap.add($r * lda));
                            $x = $fma(av, b0, $x);
                            $y = $fma(av, b1, $y);
                        )*
                        step += 1;
                    }
                    if let Some((lo, hi)) = start.clamp {
                        let (lo, hi) = ($set1(lo), $set1(hi));
                        $(
                            $x = $min($max($x, lo), hi);
                            $y = $min($max($y, lo), hi);
                        )*
                    }
                    $(
                        $store(c.add($r * ldc), $x);
                        $store(c.add($r * ldc + $lanes), $y);
                    )*
                }
            }
        };
    }

    with_avx512!(
        tile,
        tile_avx512,
        [
            (0, x0, y0),
            (1, x1, y1),
            (2, x2, y2),
            (3, x3, y3),
            (4, x4, y4),
            (5, x5, y5),
            (6, x6, y6),
            (7, x7, y7),
            (8, x8, y8),
            (9, x9, y9),
            (10, x10, y10),
            (11, x11, y11)
        ]
    );

    with_avx2!(
        tile,
        tile_avx2,
        [
            (0, x0, y0),
            (1, x1, y1),
            (2, x2, y2),
            (3, x3, y3),
            (4, x4, y4),
            (5, x5, y5)
        ]
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(len: usize, seed: u32) -> Vec<f32> {
        (0..len)
            .map(|i| ((i as u32).wrapping_mul(2_654_435_761).wrapping_add(seed) >> 8) as f32)
            .map(|v| v / (1u32 << 24) as f32 - 0.5)
            .collect()
    }

    fn isas() -> Vec<Isa> {
        let mut isas = vec![Isa::Plain];
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx2")
                && std::arch::is_x86_feature_detected!("fma")
            {
                isas.push(Isa::Avx2);
            }
            if std::arch::is_x86_feature_detected!("avx512f") {
                isas.push(Isa::Avx512);
            }
        }
        isas
    }

    /// Every kernel this CPU runs gives the plain sum, on whole and partial tiles, depths past
    /// one block, strided rows of `a` and `c`, with and without adding `c`, and clamped.
    #[test]
    fn packed_products_equal_the_plain_sum() {
        let shapes = [
            (1, 1, 1),
            (12, 8, 32),
            (13, 3, 24),
            (50, 300, 70),
            (7, 576, 16),
        ];
        let epilogues = [
            Epilogue::default(),
            Epilogue {
                add_c: true,
                clamp: None,
            },
            Epilogue {
                add_c: true,
                clamp: Some((0.0, 0.5)),
            },
        ];
        for &(m, k, n) in &shapes {
            let (lda, ldc) = (k + 3, n + 5);
            let a = values(m * lda, 1);
            let b = values(k * n, 2);
            let bias = values(n, 4);
            let before = values(m * ldc, 3);
            for epi in epilogues {
                let mut want = before.clone();
                for i in 0..m {
                    for j in 0..n {
                        let dot: f64 = (0..k)
                            .map(|l| f64::from(a[i * lda + l]) * f64::from(b[l * n + j]))
                            .sum();
                        let c = if epi.add_c { before[i * ldc + j] } else { 0.0 };
                        let v = dot as f32 + bias[j] + c;
                        want[i * ldc + j] = epi.clamp.map_or(v, |(lo, hi)| v.max(lo).min(hi));
                    }
                }
                for isa in isas() {
                    let packed = PackedB::for_isa(&b, &bias, k, n, isa);
                    let mut got = before.clone();
                    packed.apply(&mut got, ldc, &a, lda, m, epi);
                    for i in 0..m {
                        for j in 0..ldc {
                            let (g, w) = (got[i * ldc + j], want[i * ldc + j]);
                            let at = format!("{isa:?} {m}×{k}×{n} {epi:?} at {i},{j}");
                            if j < n {
                                assert!((g - w).abs() < 1e-4 * k as f32, "{at}: {g} vs {w}");
                            } else {
                                assert_eq!(g, before[i * ldc + j], "{at}: past column {n}");
                            }
                        }
                    }
                }
            }
        }
    }
}
