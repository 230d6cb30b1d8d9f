//! MLX's affine quantization, undone with array ops: each group of `group_size` weights along
//! the last axis shares a scale and a bias, `w = scale * q + bias`, and the `bits`-bit integers
//! `q` are packed into uint32 words, lowest bits first (`src/packed_layout.rs`).

use crate::packed_layout::check_packed;
use mlx_rs::{error::Result, Array};

/// Unpacks and rescales a quantized matrix.
///
/// - `w_q`: `[..., K * bits / 32]` uint32, each word holding `32 / bits` values, the first in
///   the lowest bits; `scales`, `biases`: `[..., K / group_size]`.
/// - Returns `w = scale * q + bias`, `[..., K]`, in the dtype of `scales`.
/// - Fails when `bits` is not 4 or 8, or the shapes do not fit together (`check_packed`).
///
/// Book: week 2, chapter 9 (quantized matmul), task 1.
pub fn dequantize(
    w_q: &Array,
    scales: &Array,
    biases: &Array,
    group_size: i32,
    bits: i32,
) -> Result<Array> {
    todo!("chapter 9, task 1: check_packed, unpack the 32 / bits values of each word, then scale * q + bias per group")
}

/// `x` times a quantized matrix, as MLX's `quantized_matmul`.
///
/// - `x`: `[..., K]`.
/// - `transpose == true`: `w_q` packs `W` `[N, K]` and the result is `x W^T`, `[..., N]` (the
///   layout of a linear layer's weight). `transpose == false`: `w_q` packs `W` `[K, N]` (groups
///   along `N`) and the result is `x W`.
/// - `scales`, `biases`, `group_size`, `bits`: as in [`dequantize`].
///
/// Book: week 2, chapter 9 (quantized matmul), task 2.
pub fn quantized_matmul(
    x: &Array,
    w_q: &Array,
    scales: &Array,
    biases: &Array,
    group_size: i32,
    bits: i32,
    transpose: bool,
) -> Result<Array> {
    todo!("chapter 9, task 2: dequantize, then x W^T (transpose) or x W")
}
