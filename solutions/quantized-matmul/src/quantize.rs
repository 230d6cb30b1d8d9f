//! MLX's affine quantization, undone with array ops: each group of `group_size` weights along
//! the last axis shares a scale and a bias, `w = scale * q + bias`, and the `bits`-bit integers
//! `q` are packed into uint32 words, lowest bits first.

use mlx_rs::{
    error::{Exception, Result},
    Array, Dtype,
};

/// Checks `bits` and `group_size`, and that the packed weight and its scales fit together;
/// returns `K`, the unpacked length of the last axis.
fn unpacked_len(w_q: &Array, scales: &Array, biases: &Array, group_size: i32, bits: i32) -> Result<i32> {
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
    let packed = *w_q.shape().last().unwrap_or(&0);
    let len = packed * (32 / bits);
    let groups_shape: Vec<i32> = match w_q.shape().split_last() {
        Some((_, leading)) if group_size > 0 && len % group_size == 0 => {
            leading.iter().copied().chain([len / group_size]).collect()
        }
        _ => {
            return Err(Exception::custom(format!(
                "a packed weight {:?} holds rows of {len} values: not a multiple of group_size {group_size}",
                w_q.shape()
            )))
        }
    };
    if scales.shape() != groups_shape || biases.shape() != groups_shape {
        return Err(Exception::custom(format!(
            "the packed weight {:?} needs scales and biases of shape {groups_shape:?}, got {:?} and {:?}",
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
/// - Fails when `bits` is not 4 or 8, or the shapes do not fit together.
///
/// Book: week 2, chapter 9 (quantized matmul), task 1.
pub fn dequantize(
    w_q: &Array,
    scales: &Array,
    biases: &Array,
    group_size: i32,
    bits: i32,
) -> Result<Array> {
    let len = unpacked_len(w_q, scales, biases, group_size, bits)?;
    let per_word = 32 / bits;
    // mlx-rs has no bit shifts: dividing by 2^(j * bits) shifts right, the remainder by 2^bits
    // keeps the low `bits` bits.
    let powers: Vec<u32> = (0..per_word).map(|j| 1u32 << (j * bits)).collect();
    let powers = Array::from_slice(&powers, &[per_word]); // [P]
    let q = w_q
        .expand_dims(-1)? // [..., K / P, 1]
        .floor_divide(&powers)? // [..., K / P, P]
        .remainder(Array::from_int(1 << bits).as_dtype(Dtype::Uint32)?)?;
    let mut grouped_shape = w_q.shape().to_vec();
    let last = grouped_shape.len() - 1;
    grouped_shape[last] = len / group_size;
    grouped_shape.push(group_size);
    let w = q
        .reshape(&grouped_shape)? // [..., K / G, G]
        .as_dtype(scales.dtype())?
        .multiply(scales.expand_dims(-1)?)?
        .add(biases.expand_dims(-1)?)?; // [..., K / G, G]
    let mut shape = w_q.shape().to_vec();
    shape[last] = len;
    w.reshape(&shape) // [..., K]
}

/// `x` times a quantized matrix, as MLX's `quantized_matmul`.
///
/// - `x`: `[..., K]`.
/// - `transpose == true`: `w_q` packs `W` `[N, K]` and the result is `x W^T`, `[..., N]` (the
///   layout of a linear layer's weight). `transpose == false`: `w_q` packs `W` `[K, N]` and the
///   result is `x W`.
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
    let w = if transpose { w.t() } else { w }; // [K, N]
    x.matmul(&w) // [..., N]
}
