//! Task 2: quantized_matmul

use crate::harness::{mlx_quantize, MATMUL};
use mlx_rs::{ops, Dtype};
use quantized_matmul::quantized_matmul;
use rstest::rstest;
use test_support::{assert_allclose, expect_ok, random_array};

/// `transpose`: W is `[N, K]` (a linear layer's weight) and the product is `x W^T`; otherwise
/// W is `[K, N]`, quantized in groups along `N`, and the product is `x W`.
#[rstest]
#[case::one_row(&[1, 256], 64, true)]
#[case::a_batch_of_sequences(&[2, 5, 384], 96, true)]
#[case::not_transposed(&[7, 128], 256, false)]
#[case::a_batch_not_transposed(&[2, 3, 256], 128, false)]
fn task_2_quantized_matmul_matches_mlx(
    #[values(4, 8)] bits: i32,
    #[values(32, 64, 128)] group_size: i32,
    #[case] x_shape: &[i32],
    #[case] n: i32,
    #[case] transpose: bool,
) {
    let k = x_shape[x_shape.len() - 1];
    let x = random_array(x_shape, Dtype::Float32, 21);
    let w_shape = if transpose { [n, k] } else { [k, n] };
    let w = random_array(&w_shape, Dtype::Float32, 22);
    let (packed, scales, biases) = mlx_quantize(&w, group_size, bits);
    let expected = expect_ok(
        ops::quantized_matmul(&x, &packed, &scales, &biases, transpose, group_size, bits),
        "ops::quantized_matmul",
    );
    let got = expect_ok(
        quantized_matmul(&x, &packed, &scales, &biases, group_size, bits, transpose),
        "quantized_matmul",
    );
    assert_allclose(
        &got,
        &expected,
        MATMUL,
        &format!("quantized_matmul (x {x_shape:?}, W {w_shape:?}, {bits} bits, groups of {group_size}, transpose {transpose}) vs ops::quantized_matmul"),
    );
}

#[rstest]
#[case::x_of_another_width(&[3, 96], 4)]
#[case::three_bits(&[3, 128], 3)]
fn task_2_quantized_matmul_rejects_what_does_not_fit(#[case] x_shape: &[i32], #[case] bits: i32) {
    let (packed, scales, biases) =
        mlx_quantize(&random_array(&[64, 128], Dtype::Float32, 23), 64, 4);
    let x = random_array(x_shape, Dtype::Float32, 24);
    assert!(
        quantized_matmul(&x, &packed, &scales, &biases, 64, bits, true).is_err(),
        "x {x_shape:?} times W [64, 128] packed in 4 bits, read as {bits} bits, must be an Err"
    );
}
