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
    let len = check_packed(w_q, scales, biases, group_size, bits)?;
    let per_word = 32 / bits;
    // MLX has no bit shifts for us: dividing by 2^(j * bits) shifts value j down to the lowest
    // bits, and the remainder by 2^bits keeps only those.
    let shifts: Vec<u32> = (0..per_word).map(|j| 1 << (j * bits)).collect();
    let shifts = Array::from_slice(&shifts, &[per_word]); // [P]
    let levels = Array::from_slice(&[1u32 << bits], &[1]);
    let q = w_q
        .expand_dims(-1)? // [..., K / P, 1]
        .floor_divide(&shifts)? // [..., K / P, P]
        .remainder(&levels)?; // [..., K / P, P], each in 0..2^bits
    let leading = &w_q.shape()[..w_q.ndim() - 1];
    let grouped: Vec<i32> = leading
        .iter()
        .copied()
        .chain([len / group_size, group_size])
        .collect();
    let w = q
        .reshape(&grouped)? // [..., K / G, G]
        .as_dtype(scales.dtype())?
        .multiply(scales.expand_dims(-1)?)? // [..., K / G, G]
        .add(biases.expand_dims(-1)?)?; // [..., K / G, G]
    let shape: Vec<i32> = leading.iter().copied().chain([len]).collect();
    w.reshape(&shape) // [..., K]
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
    let w = dequantize(w_q, scales, biases, group_size, bits)?; // [N, K] or [K, N]
    let w = if transpose { w.swap_axes(-1, -2)? } else { w }; // [K, N]
    x.matmul(&w) // [..., N]
}
