//! The shape check at the top of a layer: an input of the rank the layer expects, as its
//! dimensions, or an error that names the layer, the input and the shape it expects.
//! Given; RoPE's `apply` and the attention layers and caches of later chapters use it.

use mlx_rs::{
    error::{Exception, Result},
    Array,
};

/// The four dimensions of `x`, or an error when it has another number of them:
/// `let [b, l, h, d] = shape4(x, "RoPE", "x of shape [B, L, H, D]")?;` fails on a `[2, 3]`
/// array with "RoPE expects x of shape [B, L, H, D], got [2, 3]".
pub fn shape4(x: &Array, what: &str, expected: &str) -> Result<[i32; 4]> {
    dimensions(x, what, expected)
}

/// The three dimensions of `x`, as [`shape4`] does for four:
/// `let [b, l, e] = shape3(x, "attention", "x of shape [B, L, E]")?;`.
pub fn shape3(x: &Array, what: &str, expected: &str) -> Result<[i32; 3]> {
    dimensions(x, what, expected)
}

fn dimensions<const N: usize>(x: &Array, what: &str, expected: &str) -> Result<[i32; N]> {
    x.shape()
        .try_into()
        .map_err(|_| Exception::custom(format!("{what} expects {expected}, got {:?}", x.shape())))
}
