//! Softmax, linear layers and scaled dot-product attention, from MLX array ops.

use mlx_rs::{error::Result, Array};

/// Softmax of `x` along `axis`: `exp(x - max) / sum(exp(x - max))`.
///
/// - `x`: any shape, any float dtype; `axis` may be negative (counted from the end).
/// - Returns an array of the same shape and dtype whose entries along `axis` sum to 1.
/// - Subtract the maximum first, so that large inputs do not overflow `exp`.
///
/// Book: week 1, chapter 1 (attention), task 1.
pub fn softmax(x: &Array, axis: i32) -> Result<Array> {
    todo!("chapter 1, task 1: softmax with max_axis, subtract, exp, sum_axis and divide")
}

/// A linear layer: `y = x W^T + b`.
///
/// - `x`: `[..., I]`; `w`: `[O, I]` (PyTorch's layout); `bias`: `[O]` or none.
/// - Returns `[..., O]`, in the dtype of `x`.
///
/// Book: week 1, chapter 1 (attention), task 2.
pub fn linear(x: &Array, w: &Array, bias: Option<&Array>) -> Result<Array> {
    todo!("chapter 1, task 2: matmul with the transposed weight, then add the bias if any")
}

/// Attention of queries over keys: `softmax(Q K^T * scale + mask) V`.
///
/// - `q`: `[..., L, D]`; `k` and `v`: `[..., S, D]`, with the same leading dims as `q`.
/// - `scale`: multiplies the scores; `None` means `1 / sqrt(D)`.
/// - `mask`: added to the scores (`0` keeps, `-inf` hides), broadcastable to `[..., L, S]`.
/// - Returns `[..., L, D]`.
///
/// Book: week 1, chapter 1 (attention), task 3.
pub fn scaled_dot_product_attention_simple(
    q: &Array,
    k: &Array,
    v: &Array,
    scale: Option<f32>,
    mask: Option<&Array>,
) -> Result<Array> {
    todo!("chapter 1, task 3: scores = q @ k^T * scale (+ mask), softmax over the last axis, @ v")
}

/// Multi-head attention with separate query, key, value and output projections, no biases.
///
/// Book: week 1, chapter 1 (attention), task 4.
pub struct SimpleMultiHeadAttention {
    // Keep what `forward` needs, e.g. the number of heads and the four weights.
}

impl SimpleMultiHeadAttention {
    /// - `hidden_size`: E, a multiple of `num_heads`.
    /// - `wq`, `wk`, `wv`, `wo`: `[E, E]` each, in the layout of [`linear`].
    /// - Fails (naming the argument) when a shape does not fit.
    ///
    /// Book: week 1, chapter 1 (attention), task 4.
    pub fn new(
        hidden_size: i32,
        num_heads: i32,
        wq: Array,
        wk: Array,
        wv: Array,
        wo: Array,
    ) -> Result<Self> {
        todo!("chapter 1, task 4: check the shapes and keep the weights")
    }

    /// - `query`: `[N, L, E]`; `key` and `value`: `[N, S, E]`.
    /// - `mask`: added to every head's scores, broadcastable to `[N, H, L, S]`.
    /// - Returns `[N, L, E]`.
    ///
    /// Book: week 1, chapter 1 (attention), task 4.
    pub fn forward(
        &self,
        query: &Array,
        key: &Array,
        value: &Array,
        mask: Option<&Array>,
    ) -> Result<Array> {
        todo!("chapter 1, task 4: project, split into heads, attend, merge the heads, project")
    }
}
