//! candle's CPU matmul, which mediasift's patched `gemm` sends to OpenBLAS (feature `openblas`,
//! crates/gemm-blas), against a plain f64 product: every layout candle hands to gemm
//! (contiguous, transposed either side, strided rows, batched, broadcast), sizes under and over
//! the threshold where a product is split over threads, and shapes of one row or column.
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use candle_core::{Device, IndexOp, Tensor};

fn reference(a: &[Vec<f32>], b: &[Vec<f32>]) -> Vec<Vec<f64>> {
    let (m, k, n) = (a.len(), b.len(), b.first().map_or(0, Vec::len));
    (0..m)
        .map(|i| {
            (0..n)
                .map(|j| (0..k).map(|p| a[i][p] as f64 * b[p][j] as f64).sum())
                .collect()
        })
        .collect()
}

fn check(a: &Tensor, b: &Tensor, what: &str) {
    let got = a.matmul(b).unwrap();
    let (a2, b2) = (a.to_vec2::<f32>().unwrap(), b.to_vec2::<f32>().unwrap());
    let want = reference(&a2, &b2);
    let got = got.to_vec2::<f32>().unwrap();
    assert_eq!(got.len(), want.len(), "{what}: rows");
    let k = b2.len().max(1) as f64;
    for (i, (g, w)) in got.iter().zip(&want).enumerate() {
        assert_eq!(g.len(), w.len(), "{what}: columns");
        for (j, (g, w)) in g.iter().zip(w).enumerate() {
            assert!(
                (*g as f64 - w).abs() <= 1e-5 * k.sqrt() * (1.0 + w.abs()),
                "{what}: [{i},{j}] {g} vs {w}"
            );
        }
    }
}

fn randn(shape: (usize, usize)) -> Tensor {
    Tensor::randn(0f32, 1.0, shape, &Device::Cpu).unwrap()
}

#[test]
fn matmul_layouts_equal_a_plain_product() {
    for (m, k, n) in [
        (1, 1, 1),
        (1, 64, 1),
        (3, 5, 7),
        (1, 300, 257),
        (257, 300, 1),
        (129, 67, 300),
        (300, 129, 67),
        (512, 384, 384),
    ] {
        let what = format!("{m}x{k}x{n}");
        let (a, b) = (randn((m, k)), randn((k, n)));
        check(&a, &b, &format!("{what} contiguous"));
        let (at, bt) = (randn((k, m)), randn((n, k)));
        check(&at.t().unwrap(), &b, &format!("{what} lhs transposed"));
        check(&a, &bt.t().unwrap(), &format!("{what} rhs transposed"));
        check(
            &at.t().unwrap(),
            &bt.t().unwrap(),
            &format!("{what} both transposed"),
        );
        // Rows further apart than their length: a column slice of a wider matrix.
        let wide = randn((m, k + 9));
        let a_strided = wide.narrow(1, 4, k).unwrap();
        check(&a_strided, &b, &format!("{what} strided rows"));
    }
}

#[test]
fn batched_and_broadcast_matmul_equal_per_item_products() {
    let dev = Device::Cpu;
    let a = Tensor::randn(0f32, 1.0, (4, 70, 90), &dev).unwrap();
    let b = Tensor::randn(0f32, 1.0, (4, 90, 110), &dev).unwrap();
    let got = a.matmul(&b).unwrap();
    // One weight for every batch item (candle folds the batch into rows) and one lhs broadcast
    // over a batch of rhs (a stride-0 batch).
    let w = Tensor::randn(0f32, 1.0, (90, 50), &dev).unwrap();
    let folded = a.broadcast_matmul(&w).unwrap();
    let lhs = Tensor::randn(0f32, 1.0, (70, 90), &dev).unwrap();
    let spread = lhs.broadcast_left(4).unwrap().matmul(&b).unwrap();
    for i in 0..4 {
        let (ai, bi) = (a.i(i).unwrap(), b.i(i).unwrap());
        let want = ai.matmul(&bi).unwrap();
        let d = (got.i(i).unwrap() - &want).unwrap().abs().unwrap();
        assert!(d.max_all().unwrap().to_scalar::<f32>().unwrap() < 1e-3);
        check(&ai, &bi, &format!("batch item {i}"));
        check(&ai, &w, &format!("folded batch item {i}"));
        let d = (folded.i(i).unwrap() - ai.matmul(&w).unwrap())
            .unwrap()
            .abs()
            .unwrap();
        assert!(d.max_all().unwrap().to_scalar::<f32>().unwrap() < 1e-3);
        let d = (spread.i(i).unwrap() - lhs.matmul(&bi).unwrap())
            .unwrap()
            .abs()
            .unwrap();
        assert!(d.max_all().unwrap().to_scalar::<f32>().unwrap() < 1e-3);
    }
}
