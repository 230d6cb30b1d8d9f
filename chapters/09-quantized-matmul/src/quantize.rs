//! MLX's affine quantization, undone with array ops: each group of `group_size` weights along
//! the last axis shares a scale and a bias, `w = scale * q + bias`, and the `bits`-bit integers
//! `q` are packed into uint32 words, lowest bits first.

use mlx_rs::{
    error::{Exception, Result},
    Array, Dtype,
};

/// Checks `bits`, the packed weight's dtype, and that its scales and biases fit it; returns `K`,
/// the unpacked length of the last axis.
///
/// Given.
fn check_packed(
    w_q: &Array,
    scales: &Array,
    biases: &Array,
    group_size: i32,
    bits: i32,
) -> Result<i32> {
    if bits != 4 && bits != 8 {
        return Err(Exception::custom(format!(
            "bits must be 4 or 8, got {bits}"
        )));
    }
    if w_q.dtype() != Dtype::Uint32 {
        return Err(Exception::custom(format!(
            "the packed weight must be uint32, got {:?}",
            w_q.dtype()
        )));
    }
    let Some((&words, leading)) = w_q.shape().split_last() else {
        return Err(Exception::custom("the packed weight is a scalar"));
    };
    let len = words * (32 / bits);
    if group_size <= 0 || len % group_size != 0 {
        return Err(Exception::custom(format!(
            "the packed weight {:?} holds rows of {len} values ({bits} bits): not a multiple of group_size {group_size}",
            w_q.shape()
        )));
    }
    let groups: Vec<i32> = leading.iter().copied().chain([len / group_size]).collect();
    if scales.shape() != groups || biases.shape() != groups {
        return Err(Exception::custom(format!(
            "the packed weight {:?} ({bits} bits, groups of {group_size}) needs scales and biases of shape {groups:?}, got {:?} and {:?}",
            w_q.shape(),
            scales.shape(),
            biases.shape()
        )));
    }
    Ok(len)
}

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
