//! Task 3: QuantizedLinear

use crate::harness::{mlx_quantize, DEQUANTIZED, MATMUL};
use mlx_rs::{ops, Array, Dtype};
use quantized_matmul::{Kernel, Linear, QuantizedLinear};
use rstest::rstest;
use test_support::{assert_allclose, expect_ok, random_array};

const OUT: i32 = 96;
/// Two groups of 128 per row: MLX 0.32.2's CUDA `quantized_matmul` is wrong when a row is a
/// single group of 128 and `x` has several rows (platform/cuda/quantized_matmul_check.py), and a
/// reference must be right on every backend.
const IN: i32 = 256;

/// A float weight `[OUT, IN]` and, when asked, a bias `[OUT]`.
fn float_layer(with_bias: bool) -> (Array, Option<Array>) {
    let weight = random_array(&[OUT, IN], Dtype::Float32, 31);
    let bias = with_bias.then(|| random_array(&[OUT], Dtype::Float32, 32));
    (weight, bias)
}

fn course_layer(with_bias: bool, group_size: i32, bits: i32) -> QuantizedLinear {
    let (weight, bias) = float_layer(with_bias);
    expect_ok(
        QuantizedLinear::quantize(&weight, bias, group_size, bits, Kernel::Course),
        "QuantizedLinear::quantize",
    )
}

#[rstest]
fn task_3_forward_matches_mlx_quantized_matmul(
    #[values(4, 8)] bits: i32,
    #[values(32, 128)] group_size: i32,
    #[values(false, true)] with_bias: bool,
) {
    let layer = course_layer(with_bias, group_size, bits);
    let (weight, bias) = float_layer(with_bias);
    let (packed, scales, biases) = mlx_quantize(&weight, group_size, bits);
    let x = random_array(&[2, 3, IN], Dtype::Float32, 33);
    let mut expected = expect_ok(
        ops::quantized_matmul(&x, &packed, &scales, &biases, true, group_size, bits),
        "ops::quantized_matmul",
    ); // [2, 3, OUT]
    if let Some(bias) = &bias {
        expected = expect_ok(expected.add(bias), "add");
    }
    let got = expect_ok(layer.forward(&x), "QuantizedLinear::forward");
    assert_allclose(
        &got,
        &expected,
        MATMUL,
        &format!("QuantizedLinear::forward ({bits} bits, groups of {group_size}, bias {with_bias}) vs ops::quantized_matmul"),
    );
}

/// An embedding lookup: ids `[2, 3]` give rows `[2, 3, IN]`, repeats and all.
#[rstest]
fn task_3_rows_are_the_dequantized_rows(#[values(4, 8)] bits: i32) {
    let layer = course_layer(false, 64, bits);
    let (weight, _) = float_layer(false);
    let (packed, scales, biases) = mlx_quantize(&weight, 64, bits);
    let ids = Array::from_slice(&[3u32, 0, 95, 3, 7, 1], &[2, 3]);
    let whole = expect_ok(
        ops::dequantize(&packed, &scales, &biases, 64, bits),
        "ops::dequantize",
    );
    let expected = expect_ok(whole.take_axis(&ids, 0), "take_axis"); // [2, 3, IN]
    let got = expect_ok(layer.rows(&ids), "QuantizedLinear::rows");
    assert_allclose(
        &got,
        &expected,
        DEQUANTIZED,
        &format!("QuantizedLinear::rows of ids [[3, 0, 95], [3, 7, 1]] ({bits} bits)"),
    );
}

/// float32 scales and biases: `OUT * IN * bits / 8` bytes of packed weight, `2 * OUT * IN / G`
/// float32 scales and biases, and the bias.
#[rstest]
fn task_3_shape_and_nbytes_count_the_packed_weight(
    #[values(4, 8)] bits: i32,
    #[values(32, 64, 128)] group_size: i32,
    #[values(false, true)] with_bias: bool,
) {
    let layer = course_layer(with_bias, group_size, bits);
    assert_eq!(
        layer.shape(),
        (OUT, IN),
        "QuantizedLinear::shape is (out, in), unpacked"
    );
    let bytes =
        OUT * IN * bits / 8 + 2 * OUT * (IN / group_size) * 4 + if with_bias { OUT * 4 } else { 0 };
    assert_eq!(
        layer.nbytes(),
        bytes as usize,
        "QuantizedLinear::nbytes ({bits} bits, groups of {group_size}, bias {with_bias})"
    );
}
