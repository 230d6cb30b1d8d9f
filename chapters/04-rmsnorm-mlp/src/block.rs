//! The decoder block of Llama and Qwen: pre-norm attention and MLP, each added to the residual
//! stream.

use crate::{mlp::Mlp, rmsnorm::RmsNorm};
use gqa::{Attention, Mask, Offset};
use mlx_rs::{error::Result, Array};

/// One decoder layer: `h = x + attention(norm(x))`, `out = h + mlp(norm(h))`.
///
/// Book: week 1, chapter 4 (RMSNorm and the MLP), task 4.
pub struct TransformerBlock {
    // Keep the two norms, the attention layer and the MLP.
}

impl TransformerBlock {
    /// The parts of layer `n`, named as in HF checkpoints (`model.layers.{n}.input_layernorm`,
    /// `.self_attn`, `.post_attention_layernorm`, `.mlp`).
    ///
    /// Book: week 1, chapter 4 (RMSNorm and the MLP), task 4.
    pub fn new(
        input_layernorm: RmsNorm,
        attention: Attention,
        post_attention_layernorm: RmsNorm,
        mlp: Mlp,
    ) -> Self {
        todo!("chapter 4, task 4: keep the four parts")
    }

    /// - `x`: `[B, L, E]`, the residual stream.
    /// - `offset`, `mask`: passed to the attention layer.
    /// - Returns `[B, L, E]`, the residual stream after this layer.
    ///
    /// Book: week 1, chapter 4 (RMSNorm and the MLP), task 4.
    pub fn forward(&self, x: &Array, offset: Offset, mask: Mask) -> Result<Array> {
        todo!("chapter 4, task 4: add attention of the normed x, then the MLP of the normed sum")
    }
}
