//! The attention layer of Llama, Qwen2 and Qwen3: projections, RoPE, grouped-query attention
//! and the output projection.

use crate::{AttentionConfig, AttentionWeights, Mask};
use mlx_rs::{error::Result, Array};
use rope::Offset;

/// The self-attention layer of a decoder block.
///
/// Book: week 1, chapter 3 (grouped-query attention), tasks 3 and 4.
pub struct Attention {
    // Keep what `forward` needs: the config, the weights and a `rope::RoPE`.
}

impl Attention {
    /// - Fails (naming the field) when `num_heads` is not a positive multiple of `num_kv_heads`,
    ///   `head_dim` is odd, or a weight's shape does not fit `config`.
    ///
    /// Book: week 1, chapter 3 (grouped-query attention), task 3.
    pub fn new(config: AttentionConfig, weights: AttentionWeights) -> Result<Self> {
        todo!("chapter 3, task 3: check the shapes, keep the weights and make the RoPE")
    }

    /// - `x`: `[B, L, E]`, the normalized residual stream.
    /// - `offset`: the position of `x[:, 0]`, for RoPE.
    /// - `mask`: `Mask::Causal` for a prompt; see
    ///   [`scaled_dot_product_attention_grouped`](crate::scaled_dot_product_attention_grouped).
    /// - Returns `[B, L, E]`, to be added to the residual stream.
    ///
    /// Book: week 1, chapter 3 (grouped-query attention), tasks 3 and 4.
    pub fn forward(&self, x: &Array, offset: Offset, mask: Mask) -> Result<Array> {
        todo!("chapter 3, task 3: project, split heads, RoPE, grouped attention, merge, project")
    }
}
