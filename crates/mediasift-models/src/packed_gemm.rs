//! `c = clamp(a · b + bias (+ c))` for a fixed right-hand side (a layer's weights) packed once
//! at load, in the layout our register-tiled micro-kernels read: AVX-512 (12 rows × 32 columns
//! of `c` in 24 registers) when the CPU has it at run time, AVX2 + FMA (6 × 16) otherwise, and
//! OpenBLAS on anything else.
//!
//! Through OpenBLAS every product repacked the weights (11 % of open_nsfw's time), and our speed
//! hung on OpenBLAS knowing the CPU: Debian's 0.3.21 takes a 5th-generation Xeon (family 6,
//! model 207) for a Prescott and runs SSE3 kernels at a sixth of the AVX-512 speed. Here the
//! weights are packed once, the kernels read the rows of `a` where they lie (packing them too
//! cost 2/3 as much as the products; a [`Lhs`] of several taps lets a 3×3 convolution read its
//! input map without unfolding it), and the bias, a residual (from its own map, or already in
//! `c`) and the activation are applied in registers (no passes over `c` before or after). A
//! product's last rows run on kernels stamped out for fewer rows, so a 49-pixel map (7×7)
//! computes 49 rows, not 60, and a last panel of at most 16 columns on AVX-512 runs on the AVX2
//! kernels instead of half-empty 32-column tiles.
//!
//! One pass of the kernels runs through several taps (a 7×7 stem's seven kernel rows of 21
//! values: 40 -> 58 GFLOP/s on one Zen 3 core, not seven passes over `c`); what `c` and the
//! residual hold is added after the steps, with their lines prefetched before them, so that the
//! sums never wait on a cache miss; rows run in blocks whose part of `a` stays in L2 while every
//! panel reads it, and through every panel one tile at a time where `b` fits in L1.

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
            if Isa::has_avx2() {
                return Isa::Avx2;
            }
        }
        Isa::Plain
    }

    /// Whether this CPU runs the AVX2 + FMA kernels.
    fn has_avx2() -> bool {
        #[cfg(target_arch = "x86_64")]
        {
            std::arch::is_x86_feature_detected!("avx2")
                && std::arch::is_x86_feature_detected!("fma")
        }
        #[cfg(not(target_arch = "x86_64"))]
        false
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
    /// A tile of `MR` rows of `NR` values at the stride of `c` added to the sums (a
    /// residual), or null.
    res: *const f32,
    clamp: Option<(f32, f32)>,
    /// The offsets from `a` of the taps the depth steps run through, one after another.
    taps: *const usize,
    ntaps: usize,
}

/// The left-hand side of a product: row `i` at depth `l` is
/// `data[i·lda + taps[l / seg] + l % seg]`. A row-major matrix is one tap at 0 with `seg = k`
/// ([`Lhs::rows`]); a 3×3 convolution over a zero-bordered NHWC map is three taps, one per
/// kernel row at that row's offset, of `seg = 3·cin` values (the row's three pixels are
/// neighbours), read where they lie (no unfolded copy).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Lhs<'a> {
    pub data: &'a [f32],
    pub lda: usize,
    pub taps: &'a [usize],
    pub seg: usize,
}

impl<'a> Lhs<'a> {
    /// A row-major `[m, k]` matrix with row stride `lda`.
    pub fn rows(data: &'a [f32], lda: usize, k: usize) -> Lhs<'a> {
        Lhs {
            data,
            lda,
            taps: &[0],
            seg: k,
        }
    }

    /// Whether `m` rows of depth `k` lie inside `data`.
    fn fits(&self, m: usize, k: usize) -> bool {
        let last = self.taps.iter().max().copied().unwrap_or(0);
        self.seg > 0
            && self.taps.len() * self.seg == k
            && self.data.len() >= (m - 1) * self.lda + last + self.seg
    }

    /// The depth blocks, each one pass of the kernels over `c`: whole taps together up to
    /// 1.5·`kc_max` steps (a 7×7 stem's seven taps of 21 in one pass, not seven), or pieces of
    /// at most `kc_max` steps of a deeper tap.
    fn blocks(&self, kc_max: usize) -> impl Iterator<Item = Block<'a>> + use<'a> {
        let seg = self.seg.max(1);
        let (group, piece) = if seg <= kc_max {
            ((kc_max + kc_max / 2) / seg, seg)
        } else {
            (1, kc_max)
        };
        // group ≥ 1: 1.5·kc_max / seg ≥ 1.5 when seg ≤ kc_max.
        let taps = self.taps;
        taps.chunks(group).enumerate().flat_map(move |(g, taps)| {
            (0..seg).step_by(piece).map(move |d| Block {
                k0: g * group * seg + d,
                d,
                steps: piece.min(seg - d),
                taps,
            })
        })
    }
}

/// One pass of the kernels over `c`: depth `k0..k0 + kc()`, `steps` values from `d` on in each
/// of `taps` (which follow one another in depth).
#[derive(Debug, Clone, Copy)]
struct Block<'a> {
    k0: usize,
    d: usize,
    steps: usize,
    taps: &'a [usize],
}

impl Block<'_> {
    fn kc(&self) -> usize {
        self.steps * self.taps.len()
    }

    /// Values from the start of a tile's first row that its last row's last tap reaches.
    fn span(&self, rows: usize, lda: usize) -> usize {
        let last = self.taps.iter().max().copied().unwrap_or(0);
        (rows - 1) * lda + last + self.d + self.steps
    }
}

/// `(steps, a, lda, b, c, ldc, start)`: one register tile of `c` (rows at stride `ldc`) :=
/// `start` + Σ over `start.taps` of `a + tap` (rows at stride `lda`, `steps` values) · the
/// next `steps` rows of `b`.
type Kernel = unsafe fn(usize, *const f32, usize, *const f32, *mut f32, usize, &Start);

/// Floats of the `KC × NR` block of `b` one pass over `c` reads for every row tile (and the
/// most a depth block of all panels may hold for tile-major order): half of this CPU's L1
/// data cache, so that it stays there (16 KiB on 32 KiB: Zen 3 and 4). With
/// 48 KiB (a Xeon with AVX-512), 24 KiB blocks (a depth of 192 a pass, not 128) took open_nsfw
/// at batch 32 from a median of 104.9 to 107.6 img/s over eight runs of each binary in turn
/// (the new one faster in seven); MobileNetV2 moved within its noise (median 276 -> 284), and
/// the tile-major limit's move from 16 to 24 KiB left both within it (three runs each).
fn block_floats() -> usize {
    static FLOATS: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *FLOATS.get_or_init(|| l1d_bytes().unwrap_or(32 << 10).clamp(16 << 10, 64 << 10) / 8)
}

/// The size of cpu0's L1 data cache, from Linux's sysfs.
fn l1d_bytes() -> Option<usize> {
    let dir = std::path::Path::new("/sys/devices/system/cpu/cpu0/cache");
    (0..8).find_map(|i| {
        let index = dir.join(format!("index{i}"));
        let read = |f: &str| std::fs::read_to_string(index.join(f)).ok();
        let (level, kind) = (read("level")?, read("type")?);
        if level.trim() != "1" || kind.trim() != "Data" {
            return None;
        }
        let size = read("size")?;
        let kib = size.trim().strip_suffix('K')?.parse::<usize>().ok()?;
        Some(kib << 10)
    })
}

/// Floats of `a` that one block of rows reads for each panel of `b` in turn (256 KiB, half of
/// the smallest L2 we run on): past it, every panel would stream the rows from L3 again.
const ROW_BLOCK_FLOATS: usize = 1 << 16;

/// Rows of `a` per block (a whole number of tiles of 12 and of 6 rows) when a depth block
/// reads `min(lda, kc)` new values a row.
fn row_block(lda: usize, kc: usize) -> usize {
    (ROW_BLOCK_FLOATS / lda.min(kc).max(1) / 12 * 12).max(12)
}

/// The micro-kernels of `isa`, by rows (none for [`Isa::Plain`]).
fn kernels(isa: Isa) -> &'static [Kernel] {
    match isa {
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 => &kernels::AVX512,
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 => &kernels::AVX2,
        _ => &[],
    }
}

/// A `[k, n]` matrix and its `[n]` bias, packed for one [`Isa`]: column panels of `NR` (a last
/// narrow one may be a [`Panel`] of the AVX2 kernels' 16), each `k` rows of its width (zero past
/// `n`), and the bias padded to whole panels.
#[derive(Debug)]
pub(crate) struct PackedB {
    k: usize,
    n: usize,
    isa: Isa,
    /// Where each panel's columns lie, and the kernels that multiply them.
    panels: Vec<Panel>,
    data: Vec<f32>,
    bias: Vec<f32>,
}

/// Rows `r0..r0 + m` of a product over the columns of `panels`.
#[derive(Debug, Clone, Copy)]
struct Part<'a> {
    r0: usize,
    m: usize,
    kc_max: usize,
    epi: Epilogue,
    residual: Option<&'a [f32]>,
    panels: &'a [Panel],
}

/// `c` shared by the tasks of [`PackedB::product_split`], each writing its own columns.
#[derive(Clone, Copy)]
struct SharedC(*mut f32);

// SAFETY: the tasks holding it write disjoint columns (see `PackedB::product_split`).
#[allow(unsafe_code)]
unsafe impl Send for SharedC {}
#[allow(unsafe_code)]
unsafe impl Sync for SharedC {}

impl SharedC {
    /// Through a method, so that closures capture the (Sync) wrapper, not the pointer.
    fn get(self) -> *mut f32 {
        self.0
    }
}

/// One column panel of a [`PackedB`]: columns `col..col + width` (zero past `n`), `k` rows of
/// `width` values from `data[offset]`, multiplied by `isa`'s kernels (of `width` columns).
#[derive(Debug, Clone, Copy)]
struct Panel {
    col: usize,
    width: usize,
    offset: usize,
    isa: Isa,
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
                panels: Vec::new(),
                data: b.to_vec(),
                bias: bias.to_vec(),
            };
        }
        let nr = isa.tile().1;
        let mut panels = Vec::new();
        let mut col = 0;
        while col < n {
            // A last panel of at most 16 columns on AVX-512 runs on the AVX2 kernels (16
            // columns a row), not on half-empty 32-column tiles: MobileNetV2's 16- and
            // 24-channel layers.
            let isa = match isa {
                Isa::Avx512 if n - col <= 16 && Isa::has_avx2() => Isa::Avx2,
                isa => isa,
            };
            let width = isa.tile().1;
            let offset = panels.last().map_or(0, |p: &Panel| p.offset + k * p.width);
            panels.push(Panel {
                col,
                width,
                offset,
                isa,
            });
            col += width;
        }
        let last = panels.last().expect("n > 0");
        let mut data = vec![0f32; last.offset + k * last.width];
        for p in &panels {
            let cols = p.width.min(n - p.col);
            let panel = &mut data[p.offset..][..k * p.width];
            for (row, dst) in panel.chunks_exact_mut(p.width).enumerate() {
                dst[..cols].copy_from_slice(&b[row * n + p.col..][..cols]);
            }
        }
        let mut padded = vec![0f32; last.col + last.width];
        padded[..n].copy_from_slice(bias);
        debug_assert!(nr >= last.width);
        PackedB {
            k,
            n,
            isa,
            panels,
            data,
            bias: padded,
        }
    }

    /// `c[m, n] = clamp(a[m, k] · b + bias (+ c))`, with `c` and `a` row-major with row strides
    /// `ldc` and `lda`.
    pub fn apply(&self, c: &mut [f32], ldc: usize, a: &[f32], lda: usize, m: usize, epi: Epilogue) {
        self.product(c, ldc, Lhs::rows(a, lda, self.k), m, epi, None);
    }

    /// `c[m, n] = clamp(a[m, k] · b + bias (+ c) (+ residual))`, with `c` (and the residual,
    /// laid out as `c`) row-major with row stride `ldc`.
    pub fn product(
        &self,
        c: &mut [f32],
        ldc: usize,
        a: Lhs<'_>,
        m: usize,
        epi: Epilogue,
        residual: Option<&[f32]>,
    ) {
        self.product_split(c, ldc, a, m, epi, residual, 1);
    }

    /// [`PackedB::product`] with the panels of columns shared out over `parts` tasks of the
    /// pool: for a small map's layer, each thread then reads only its share of the weights and
    /// the shares stay even (a 7×7 map's rows split 4 / 3).
    #[allow(clippy::too_many_arguments)]
    pub fn product_split(
        &self,
        c: &mut [f32],
        ldc: usize,
        a: Lhs<'_>,
        m: usize,
        epi: Epilogue,
        residual: Option<&[f32]>,
        parts: usize,
    ) {
        let (k, n) = (self.k, self.n);
        if m == 0 || n == 0 {
            return;
        }
        assert!(
            ldc >= n && c.len() >= (m - 1) * ldc + n && a.fits(m, k),
            "product out of bounds"
        );
        if let Some(r) = residual {
            assert!(r.len() >= (m - 1) * ldc + n, "residual out of bounds");
            assert!(!epi.add_c, "a residual and the sums already in c");
        }
        if kernels(self.isa).is_empty() {
            return self.apply_plain(c, ldc, a, m, epi, residual);
        }
        let parts = parts.clamp(1, self.panels.len());
        let out = SharedC(c.as_mut_ptr());
        let share = |i: usize| {
            let count = self.panels.len();
            let panels = &self.panels[count * i / parts..count * (i + 1) / parts];
            // SAFETY: `c` holds (m − 1)·ldc + n values (asserted above) and is borrowed
            // mutably for this call; the parts' panels are disjoint column ranges, so no two
            // tasks touch the same value.
            #[allow(unsafe_code)]
            unsafe {
                self.panels_product(out.get(), ldc, a, m, epi, residual, panels)
            }
        };
        if parts == 1 {
            share(0);
        } else {
            crate::team::for_each(parts, &share);
        }
    }

    /// The columns of `panels` of [`PackedB::product`] (checked there), in blocks of rows.
    ///
    /// # Safety
    /// `c` must be valid for reads and writes of `(m − 1)·ldc + n` values, and no one else may
    /// read or write the columns of `panels` in them while this runs.
    #[allow(unsafe_code, clippy::too_many_arguments)]
    unsafe fn panels_product(
        &self,
        c: *mut f32,
        ldc: usize,
        a: Lhs<'_>,
        m: usize,
        epi: Epilogue,
        residual: Option<&[f32]>,
        panels: &[Panel],
    ) {
        let kc_max = (block_floats() / self.isa.tile().1).max(1);
        // A partial panel of columns runs on a copy of its part of `c`, `edge_c`.
        let mut edge_c = [0f32; 12 * 32];
        let block = row_block(a.lda, kc_max.min(a.seg));
        for r0 in (0..m).step_by(block) {
            let rows = block.min(m - r0);
            let part = Part {
                r0,
                m: rows,
                kc_max,
                epi,
                residual,
                panels,
            };
            // SAFETY: rows r0..r0 + rows of what the caller guarantees.
            unsafe { self.block_product(c, ldc, a, &part, &mut edge_c) };
        }
    }

    /// One [`Part`] of [`PackedB::product`]: every depth block, each one panel after another
    /// over the part's rows.
    ///
    /// # Safety
    /// As [`PackedB::panels_product`], for rows `part.r0..part.r0 + part.m`.
    #[allow(unsafe_code)]
    unsafe fn block_product(
        &self,
        c: *mut f32,
        ldc: usize,
        a: Lhs<'_>,
        part: &Part<'_>,
        edge_c: &mut [f32; 12 * 32],
    ) {
        let (k, n, lda) = (self.k, self.n, a.lda);
        let Part {
            r0,
            m,
            kc_max,
            epi,
            residual,
            panels,
        } = *part;
        // SAFETY: row r0 is inside `c` (the caller's rows).
        let c = unsafe { c.add(r0 * ldc) };
        let residual = residual.map(|r| &r[r0 * ldc..]);
        let rows_a = &a.data[r0 * lda..];
        for block in a.blocks(kc_max) {
            let (k0, kc) = (block.k0, block.kc());
            // Where a depth block of `b` (all panels) fits in a pass's share of L1, one tile's rows run
            // through every panel before the next rows: `c` (and the residual) then stream
            // row after row instead of one panel's columns at a time down all the rows
            // (open_nsfw's 32-deep 1×1 onto a 56×56×128 shortcut, one image per core of a
            // Zen 3: 39-42 -> 47 GFLOP/s; the whole network ~45 -> ~49 img/s, noisy).
            let group = if kc * self.bias.len() <= block_floats() {
                12
            } else {
                m
            };
            for g0 in (0..m).step_by(group) {
                let g1 = m.min(g0 + group);
                for panel in panels {
                    let (mr, nr) = panel.isa.tile();
                    let kernels = kernels(panel.isa);
                    let b = &self.data[panel.offset + k0 * nr..][..kc * nr];
                    let cols = nr.min(n - panel.col);
                    let first = k0 == 0;
                    let res = residual.filter(|_| first);
                    let start = |res: *const f32, add_c: bool| Start {
                        row: if first {
                            self.bias[panel.col..][..nr].as_ptr()
                        } else {
                            std::ptr::null()
                        },
                        add_c,
                        res,
                        clamp: epi.clamp.filter(|_| k0 + kc == k),
                        taps: block.taps.as_ptr(),
                        ntaps: block.taps.len(),
                    };
                    let add_c = !first || epi.add_c;
                    for t in (g0..g1).step_by(mr) {
                        let rows = mr.min(g1 - t);
                        let kernel = kernels[rows - 1];
                        let a_tile = &rows_a[t * lda..][..block.span(rows, lda)];
                        let a_at = a_tile[block.d..].as_ptr();
                        let at = t * ldc + panel.col;
                        if cols == nr {
                            let res = res.map_or(std::ptr::null(), |r| r[at..].as_ptr());
                            // SAFETY: `a_tile` holds `rows` rows at stride lda of each
                            // tap's `steps` values from `d` (`Block::span`), `b` kc·nr values
                            // and `start.row` nr (sliced above); the tile's last element of `c`
                            // (and of the residual, laid out as `c`), (t + rows − 1)·ldc + col
                            // + nr − 1, is at most (m − 1)·ldc + n − 1, inside the caller's
                            // rows of `c` and this panel's columns; the kernel computes `rows`
                            // rows of the panel's `nr`, and its features were detected at run
                            // time when the ISA was chosen (AVX2's with AVX-512's).
                            unsafe {
                                let s = start(res, add_c);
                                kernel(block.steps, a_at, lda, b.as_ptr(), c.add(at), ldc, &s)
                            };
                        } else {
                            let tile = &mut edge_c[..rows * nr];
                            tile.fill(0.0);
                            // The residual comes in as the tile's sums so far.
                            for r in 0..rows {
                                let dst = &mut tile[r * nr..][..cols];
                                match res {
                                    Some(res) => dst.copy_from_slice(&res[at + r * ldc..][..cols]),
                                    // SAFETY: the tile's row r, columns col..col + cols, is
                                    // inside `c` and this panel's (the caller's bounds).
                                    None if add_c => unsafe {
                                        std::ptr::copy_nonoverlapping(
                                            c.add(at + r * ldc),
                                            dst.as_mut_ptr(),
                                            cols,
                                        )
                                    },
                                    None => {}
                                }
                            }
                            // SAFETY: as above for `a_tile`, `b` and `start`; `tile` holds
                            // `rows` rows of nr.
                            unsafe {
                                let s = start(std::ptr::null(), add_c || res.is_some());
                                kernel(
                                    block.steps,
                                    a_at,
                                    lda,
                                    b.as_ptr(),
                                    tile.as_mut_ptr(),
                                    nr,
                                    &s,
                                )
                            };
                            for r in 0..rows {
                                // SAFETY: as for the copy into the tile above.
                                unsafe {
                                    std::ptr::copy_nonoverlapping(
                                        tile[r * nr..].as_ptr(),
                                        c.add(at + r * ldc),
                                        cols,
                                    )
                                };
                            }
                        }
                    }
                }
            }
        }
    }

    /// [`PackedB::product`] through OpenBLAS, on CPUs without our kernels.
    fn apply_plain(
        &self,
        c: &mut [f32],
        ldc: usize,
        a: Lhs<'_>,
        m: usize,
        epi: Epilogue,
        residual: Option<&[f32]>,
    ) {
        let n = self.n;
        let rows = || (0..m).map(|i| i * ldc..i * ldc + n);
        for r in rows() {
            let row = &mut c[r.clone()];
            if epi.add_c {
                row.iter_mut().zip(&self.bias).for_each(|(d, b)| *d += b);
            } else {
                row.copy_from_slice(&self.bias);
            }
            if let Some(res) = residual {
                row.iter_mut().zip(&res[r]).for_each(|(d, v)| *d += v);
            }
        }
        for (t, &off) in a.taps.iter().enumerate() {
            let w = (&self.data[t * a.seg * n..][..a.seg * n], n, 1);
            let dims = (m, n, a.seg);
            let lhs = (&a.data[off..], a.lda, 1);
            product(c, ldc, true, lhs, w, dims, 1.0, Parallelism::None);
        }
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

    /// Asks for the cache line holding `p` (a hint: no fault for any address).
    #[inline(always)]
    fn prefetch(p: *const f32) {
        // SAFETY: a prefetch reads nothing architecturally and cannot fault.
        unsafe { std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(p.cast()) }
    }

    /// One register tile: `c[MR rows, 2 vectors] := start + a · b` over `kc` steps per tap,
    /// where `a` at each tap holds `MR` rows of `kc` values at stride `lda` and `b` two vectors
    /// per step. The
    /// accumulators are named variables, not an array, so they stay in registers.
    macro_rules! tile {
        ($name:ident, $feature:literal, $lanes:literal, $load:path, $store:path, $fma:path,
         $add:path, $max:path, $min:path, $set1:path, $zero:path,
         [$(($r:literal, $x:ident, $y:ident)),*]) => {
            /// # Safety
            /// `a` plus each of `start.taps` (`start.ntaps` of them) must hold `MR` rows of `kc`
            /// values at stride `lda`, `b` `ntaps·kc·2·LANES` values,
            /// `start.row` (unless null) `2·LANES`, and `c` and `start.res` (unless null) `MR`
            /// rows of `2·LANES` values at stride `ldc`; the CPU must have the kernel's features.
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
                    // What `c` (and the residual) hold is added after the steps, not before
                    // them: the sums then never wait on those loads, which miss the cache when
                    // few steps per tile leave the maps' lines little time to arrive (a 32-deep
                    // block's last 1×1 ran at half speed). The lines are asked for now.
                    $(
                        prefetch(c.add($r * ldc));
                        prefetch(c.add($r * ldc + 2 * $lanes - 1));
                    )*
                    if !start.res.is_null() {
                        $(
                            prefetch(start.res.add($r * ldc));
                            prefetch(start.res.add($r * ldc + 2 * $lanes - 1));
                        )*
                    }
                    // The tap's rows of `a`, and its steps of `b`, that `steps!` reads (a macro's
                    // locals resolve where it is defined).
                    let (mut ta, mut tb): (*const f32, *const f32);
                    // `kc` steps from `ta` and `tb`, accumulated.
                    macro_rules! steps {
                        () => {
                            // Four steps per iteration: the row addresses are computed once for all
                            // four (the steps differ by a constant displacement).
                            let mut step = 0;
                            while step + 4 <= kc {
                                let bp = tb.add(step * 2 * $lanes);
                                $(
                                    let ap = ta.add($r * lda + step);
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
                                let b0 = $load(tb.add(step * 2 * $lanes));
                                let b1 = $load(tb.add(step * 2 * $lanes + $lanes));
                                let ap = ta.add(step);
                                $(
                                    let av = $set1(*ap.add($r * lda));
                                    $x = $fma(av, b0, $x);
                                    $y = $fma(av, b1, $y);
                                )*
                                step += 1;
                            }
                        };
                    }
                    // Each tap's `kc` steps in turn, `b` read on through them. One tap (most
                    // products) has a loop of its own: inside the loop over taps, the deep
                    // unfolded 3×3 products ran 6-10 % slower.
                    if start.ntaps == 1 {
                        (ta, tb) = (a.add(*start.taps), b);
                        steps!();
                    } else {
                        for tap in 0..start.ntaps {
                            ta = a.add(*start.taps.add(tap));
                            tb = b.add(tap * kc * 2 * $lanes);
                            steps!();
                        }
                    }
                    if start.add_c {
                        $(
                            $x = $add($x, $load(c.add($r * ldc)));
                            $y = $add($y, $load(c.add($r * ldc + $lanes)));
                        )*
                    }
                    if !start.res.is_null() {
                        let res = start.res;
                        $(
                            $x = $add($x, $load(res.add($r * ldc)));
                            $y = $add($y, $load(res.add($r * ldc + $lanes)));
                        )*
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

    /// The kernels by rows of `c` they compute (`[r - 1]` for `r` rows): the full tile, and
    /// narrower ones for a product's last rows, so that those neither compute rows past `m`
    /// nor read them.
    pub(super) static AVX512: [super::Kernel; 12] = [
        avx512_1, avx512_2, avx512_3, avx512_4, avx512_5, avx512_6, avx512_7, avx512_8, avx512_9,
        avx512_10, avx512_11, avx512_12,
    ];
    pub(super) static AVX2: [super::Kernel; 6] = [avx2_1, avx2_2, avx2_3, avx2_4, avx2_5, avx2_6];

    /// Stamps out `$set`'s tile kernel once per leading part of the row list: `$names[r - 1]`
    /// computes the first `r` rows.
    macro_rules! by_rows {
        ($set:ident, [$($done:tt),*], [$next:tt $(, $rest:tt)*], [$name:ident $(, $names:ident)*]) => {
            $set!(tile, $name, [$($done,)* $next]);
            by_rows!($set, [$($done,)* $next], [$($rest),*], [$($names),*]);
        };
        ($set:ident, [$($done:tt),*], [], []) => {};
    }

    by_rows!(
        with_avx512,
        [],
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
        ],
        [
            avx512_1, avx512_2, avx512_3, avx512_4, avx512_5, avx512_6, avx512_7, avx512_8,
            avx512_9, avx512_10, avx512_11, avx512_12
        ]
    );
    by_rows!(
        with_avx2,
        [],
        [
            (0, x0, y0),
            (1, x1, y1),
            (2, x2, y2),
            (3, x3, y3),
            (4, x4, y4),
            (5, x5, y5)
        ],
        [avx2_1, avx2_2, avx2_3, avx2_4, avx2_5, avx2_6]
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

    /// `want[i·ldc + j] = clamp(Σ_l a(i, l)·b[l·n + j] + bias[j] + c0[i·ldc + j])` in f64, with
    /// `a(i, l)` read through `lhs`.
    fn plain_sum(
        lhs: &dyn Fn(usize, usize) -> f32,
        b: &[f32],
        bias: &[f32],
        c0: &[f32],
        (m, k, n, ldc): (usize, usize, usize, usize),
        clamp: Option<(f32, f32)>,
    ) -> Vec<f32> {
        let mut want = c0.to_vec();
        for i in 0..m {
            for j in 0..n {
                let dot: f64 = (0..k)
                    .map(|l| f64::from(lhs(i, l)) * f64::from(b[l * n + j]))
                    .sum();
                let v = dot as f32 + bias[j] + c0[i * ldc + j];
                want[i * ldc + j] = clamp.map_or(v, |(lo, hi)| v.max(lo).min(hi));
            }
        }
        want
    }

    /// `got` equals `want` within the sums' rounding on columns `0..n` and is untouched past
    /// them.
    fn assert_close(got: &[f32], want: &[f32], before: &[f32], (m, k, n, ldc): Dims, at: &str) {
        for i in 0..m {
            for j in 0..ldc {
                let (g, w) = (got[i * ldc + j], want[i * ldc + j]);
                if j < n {
                    assert!(
                        (g - w).abs() < 1e-4 * k as f32,
                        "{at} at {i},{j}: {g} vs {w}"
                    );
                } else {
                    assert_eq!(g, before[i * ldc + j], "{at} at {i},{j}: past column {n}");
                }
            }
        }
    }

    type Dims = (usize, usize, usize, usize);

    /// Every kernel this CPU runs gives the plain sum, on whole and partial tiles, depths past
    /// one block, several blocks of rows, strided rows of `a` and `c`, with and without adding
    /// `c`, clamped, and with the columns shared out over several tasks.
    #[test]
    fn packed_products_equal_the_plain_sum() {
        let shapes = [
            (1, 1, 1),
            (12, 8, 32),
            (13, 3, 24),
            (50, 300, 70),
            (7, 576, 16),
            (23, 130, 33),
            (9, 64, 64),
            // Three blocks of rows, the last one partial.
            (2 * row_block(133, 130) + 29, 130, 33),
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
            let zeros = vec![0f32; m * ldc];
            for epi in epilogues {
                let c0 = if epi.add_c { &before } else { &zeros };
                let lhs = |i: usize, l: usize| a[i * lda + l];
                let want = plain_sum(&lhs, &b, &bias, c0, (m, k, n, ldc), epi.clamp);
                for isa in isas() {
                    let packed = PackedB::for_isa(&b, &bias, k, n, isa);
                    let mut got = before.clone();
                    packed.apply(&mut got, ldc, &a, lda, m, epi);
                    let at = format!("{isa:?} {m}×{k}×{n} {epi:?}");
                    assert_close(&got, &want, &before, (m, k, n, ldc), &at);
                    // The columns shared out over tasks (more than the panels, too).
                    for parts in [2, 3, 9] {
                        let mut got = before.clone();
                        let lhs = Lhs::rows(&a, lda, k);
                        packed.product_split(&mut got, ldc, lhs, m, epi, None, parts);
                        let at = format!("{at} in {parts} parts");
                        assert_close(&got, &want, &before, (m, k, n, ldc), &at);
                    }
                }
            }
        }
    }

    /// A left-hand side of several taps (each `seg` deep, at its own offset, rows `lda` apart,
    /// taps deeper than one block and a tap before the previous one) and a residual added in
    /// the kernels equal the plain sum over the same values, on whole and partial tiles.
    #[test]
    fn tapped_products_with_a_residual_equal_the_plain_sum() {
        // The last shape spans two blocks of rows.
        for &(m, seg, n) in &[(12, 8, 32), (29, 300, 40), (5, 20, 7), (300, 300, 20)] {
            let taps = [2 * seg, 0, 7 * seg + 3, seg / 2];
            let (k, lda, ldc) = (taps.len() * seg, seg + 1, n + 3);
            let a = values((m - 1) * lda + 8 * seg + 3, 5);
            let b = values(k * n, 6);
            let bias = values(n, 7);
            let res = values(m * ldc, 8);
            let before = values(m * ldc, 9);
            let lhs = |i: usize, l: usize| a[i * lda + taps[l / seg] + l % seg];
            let clamp = Some((-0.2, 0.3));
            let want = plain_sum(&lhs, &b, &bias, &res, (m, k, n, ldc), clamp);
            let epi = Epilogue {
                add_c: false,
                clamp,
            };
            for isa in isas() {
                let packed = PackedB::for_isa(&b, &bias, k, n, isa);
                let mut got = before.clone();
                let lhs = Lhs {
                    data: &a,
                    lda,
                    taps: &taps,
                    seg,
                };
                packed.product(&mut got, ldc, lhs, m, epi, Some(&res));
                let at = format!("{isa:?} {m}×{k}×{n} taps of {seg}");
                assert_close(&got, &want, &before, (m, k, n, ldc), &at);
            }
        }
    }
}
