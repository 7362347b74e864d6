//! mediasift's addition: f32 products through OpenBLAS's `cblas_sgemm`.
//!
//! On the 2-vCPU AVX2 machines this project is measured on, OpenBLAS's sgemm ran a 1024³ f32
//! product at ~160 GFLOP/s against ~80–95 for gemm's own kernels. OpenBLAS is kept
//! single-threaded (`openblas_set_num_threads(1)`) and a product is split into row or column
//! blocks over the rayon pool instead: one thread pool for the whole process, so candle's
//! element-wise ops, our kernels and these products share the cores rather than two pools
//! oversubscribing them.
//!
//! Products whose operands have no unit stride (broadcast rows, general strides) return `false`
//! and take gemm's own path.

use crate::Parallelism;
use core::ffi::c_int;
use std::sync::Once;

#[link(name = "openblas")]
extern "C" {
    fn cblas_sgemm(
        order: c_int,
        trans_a: c_int,
        trans_b: c_int,
        m: c_int,
        n: c_int,
        k: c_int,
        alpha: f32,
        a: *const f32,
        lda: c_int,
        b: *const f32,
        ldb: c_int,
        beta: f32,
        c: *mut f32,
        ldc: c_int,
    );
    fn openblas_set_num_threads(n: c_int);
}

const ROW_MAJOR: c_int = 101;
const NO_TRANS: c_int = 111;
const TRANS: c_int = 112;

/// Products smaller than this (m·n·k) are not split over threads.
const SPLIT_WORK: usize = 1 << 18;
/// Rows or columns per block at least.
const MIN_BLOCK: usize = 16;

static SINGLE_THREADED: Once = Once::new();

/// A row-major matrix as BLAS takes it: transposed or not, with its leading dimension.
#[derive(Clone, Copy)]
struct Operand {
    trans: c_int,
    ld: usize,
}

/// `rows × cols` with strides `rs`, `cs` (in elements): `None` unless one stride is 1 (or the
/// matrix is one row or one column) and the other leaves the rows apart.
fn operand(rows: usize, cols: usize, rs: isize, cs: isize) -> Option<Operand> {
    if cs == 1 || cols <= 1 {
        let ld = if rows <= 1 { cols.max(1) as isize } else { rs };
        if ld >= cols.max(1) as isize {
            return Some(Operand {
                trans: NO_TRANS,
                ld: ld as usize,
            });
        }
    }
    if rs == 1 || rows <= 1 {
        let ld = if cols <= 1 { rows.max(1) as isize } else { cs };
        if ld >= rows.max(1) as isize {
            return Some(Operand {
                trans: TRANS,
                ld: ld as usize,
            });
        }
    }
    None
}

#[derive(Clone, Copy)]
struct Ptrs {
    a: *const f32,
    b: *const f32,
    c: *mut f32,
}
// SAFETY: the blocks handed to different threads write disjoint parts of `c`; `a` and `b` are
// only read.
unsafe impl Send for Ptrs {}
unsafe impl Sync for Ptrs {}

fn fits(v: usize) -> bool {
    v <= c_int::MAX as usize
}

/// gemm's contract: `dst = alpha·dst + beta·lhs·rhs` (`dst = beta·lhs·rhs` when `read_dst` is
/// false), `lhs` m×k, `rhs` k×n, all strided. Returns `false` when the strides do not suit BLAS
/// (nothing was written then).
#[allow(clippy::too_many_arguments)]
pub(crate) unsafe fn sgemm(
    m: usize,
    n: usize,
    k: usize,
    dst: *mut f32,
    dst_cs: isize,
    dst_rs: isize,
    read_dst: bool,
    lhs: *const f32,
    lhs_cs: isize,
    lhs_rs: isize,
    rhs: *const f32,
    rhs_cs: isize,
    rhs_rs: isize,
    alpha: f32,
    beta: f32,
    parallelism: Parallelism,
) -> bool {
    if m == 0 || n == 0 {
        return true;
    }
    if !(fits(m) && fits(n) && fits(k)) {
        return false;
    }
    // BLAS writes C row by row (unit column stride). A column-major destination is the
    // transposed product: Cᵀ = Bᵀ·Aᵀ.
    let (m, n, dst_rs, dst_cs, a, a_rs, a_cs, b, b_rs, b_cs) = if dst_cs == 1 || n == 1 {
        (m, n, dst_rs, dst_cs, lhs, lhs_rs, lhs_cs, rhs, rhs_rs, rhs_cs)
    } else if dst_rs == 1 || m == 1 {
        (n, m, dst_cs, dst_rs, rhs, rhs_cs, rhs_rs, lhs, lhs_cs, lhs_rs)
    } else {
        return false;
    };
    let Some(c_op) = operand(m, n, dst_rs, dst_cs) else {
        return false;
    };
    if c_op.trans != NO_TRANS {
        return false;
    }
    if k == 0 {
        for i in 0..m {
            for j in 0..n {
                let p = dst.offset(i as isize * dst_rs + j as isize * dst_cs);
                *p = if read_dst { alpha * *p } else { 0.0 };
            }
        }
        return true;
    }
    let (Some(a_op), Some(b_op)) = (operand(m, k, a_rs, a_cs), operand(k, n, b_rs, b_cs)) else {
        return false;
    };
    if !(fits(a_op.ld) && fits(b_op.ld) && fits(c_op.ld)) {
        return false;
    }
    SINGLE_THREADED.call_once(|| openblas_set_num_threads(1));

    let blas_alpha = beta;
    let blas_beta = if read_dst { alpha } else { 0.0 };
    let call = |p: Ptrs, rows: usize, cols: usize| {
        cblas_sgemm(
            ROW_MAJOR,
            a_op.trans,
            b_op.trans,
            rows as c_int,
            cols as c_int,
            k as c_int,
            blas_alpha,
            p.a,
            a_op.ld as c_int,
            p.b,
            b_op.ld as c_int,
            blas_beta,
            p.c,
            c_op.ld as c_int,
        )
    };
    let whole = Ptrs {
        a,
        b,
        c: dst,
    };
    let threads = match parallelism {
        Parallelism::None => 1,
        Parallelism::Rayon(0) => rayon::current_num_threads(),
        Parallelism::Rayon(t) => t,
    };
    let split_rows = m >= n;
    let long = if split_rows { m } else { n };
    let blocks = threads.min(long / MIN_BLOCK);
    if blocks <= 1 || m.saturating_mul(n).saturating_mul(k) < SPLIT_WORK {
        call(whole, m, n);
        return true;
    }
    let per = long.div_ceil(blocks);
    rayon::scope(|s| {
        for start in (0..long).step_by(per) {
            let len = per.min(long - start);
            let w = whole;
            let p = if split_rows {
                Ptrs {
                    a: w.a.offset(start as isize * a_rs),
                    b: w.b,
                    c: w.c.offset(start as isize * dst_rs),
                }
            } else {
                Ptrs {
                    a: w.a,
                    b: w.b.offset(start as isize * b_cs),
                    c: w.c.offset(start as isize * dst_cs),
                }
            };
            let call = &call;
            s.spawn(move |_| {
                if split_rows {
                    call(p, len, n)
                } else {
                    call(p, m, len)
                }
            });
        }
    });
    true
}
