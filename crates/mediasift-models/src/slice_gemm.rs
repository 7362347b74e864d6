//! Single-precision matrix products on plain slices, with the bounds checked once here: the one
//! safe wrapper our CPU kernels (convolutions, the fused transformer encoder) call `gemm`
//! (OpenBLAS for f32, see crates/gemm-blas) through.

use gemm::Parallelism;

/// `c = beta · a·b (+ c when accumulate)`: `a` [m, k] and `b` [k, n] given by (row, column)
/// strides, `c` [m, n] with row stride `c_rs`.
#[allow(unsafe_code, clippy::too_many_arguments)]
pub(crate) fn product(
    c: &mut [f32],
    c_rs: usize,
    accumulate: bool,
    a: (&[f32], usize, usize),
    b: (&[f32], usize, usize),
    (m, n, k): (usize, usize, usize),
    beta: f32,
    par: Parallelism,
) {
    let last = |rows: usize, cols: usize, rs: usize, cs: usize| {
        if rows == 0 || cols == 0 {
            0
        } else {
            (rows - 1) * rs + (cols - 1) * cs + 1
        }
    };
    assert!(
        last(m, n, c_rs, 1) <= c.len()
            && last(m, k, a.1, a.2) <= a.0.len()
            && last(k, n, b.1, b.2) <= b.0.len(),
        "product out of bounds"
    );
    // SAFETY: every element the strides address lies inside its slice (asserted above); `c` is
    // borrowed mutably, so it overlaps neither input.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            c.as_mut_ptr(),
            1,
            c_rs as isize,
            accumulate,
            a.0.as_ptr(),
            a.2 as isize,
            a.1 as isize,
            b.0.as_ptr(),
            b.2 as isize,
            b.1 as isize,
            1.0,
            beta,
            false,
            false,
            false,
            par,
        );
    }
}
