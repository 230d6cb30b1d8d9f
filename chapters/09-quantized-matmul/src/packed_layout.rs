//! MLX's packed layout of a quantized weight: `bits`-bit integers packed into uint32 words along
//! the last axis, and one scale and one bias per group of `group_size` of them. Given: your
//! `dequantize` in `src/quantize.rs` checks its inputs with [`check_packed`].

use mlx_rs::{
    error::{Exception, Result},
    Array, Dtype,
};

/// Checks `bits`, the packed weight's dtype, and that its scales and biases fit it; returns `K`,
/// the unpacked length of the last axis.
pub(crate) fn check_packed(
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
