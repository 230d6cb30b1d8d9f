//! What the tasks' tests share: the models, tolerances and MLX's own quantization.

use mlx_rs::{ops, Array};
use test_support::{expect_ok, Tolerance};

pub const SMOLLM2: &str = "smollm2-135m-instruct";
pub const SMOLLM2_4BIT: &str = "smollm2-135m-instruct-4bit";

/// Unpacking is exact; `scale * q + bias` of random scales is two float32 roundings on MLX's CPU,
/// but one on its CUDA backend, whose kernel fuses them into a multiply-add: the last bit may
/// differ (measured on an H200: 0.67909193 vs 0.67909205). One quantization level is ~0.1, so
/// this still catches a wrong level, scale or bias.
pub const DEQUANTIZED: Tolerance = Tolerance {
    rtol: 1e-6,
    atol: 1e-6,
};

/// Sums of `K` <= 384 products of N(0, 1) inputs and weights, in another order than MLX's fused
/// kernel: outputs up to ~70 differ by float32 roundings of the partial sums (measured: at most
/// 5e-5). An output that cancels to near zero keeps the absolute rounding of its partial sums, so
/// the bound is 1e-5 relative plus 1e-4 absolute: a weight off by one quantization step moves an
/// output by ~0.1.
pub const MATMUL: Tolerance = Tolerance {
    rtol: 1e-5,
    atol: 1e-4,
};

/// MLX's quantization of a float matrix `[R, C]`: packed `[R, C * bits / 32]`, scales and biases
/// `[R, C / group_size]`.
pub fn mlx_quantize(w: &Array, group_size: i32, bits: i32) -> (Array, Array, Array) {
    expect_ok(ops::quantize(w, group_size, bits), "ops::quantize")
}
