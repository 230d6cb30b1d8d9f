//! The decoder block of Llama and Qwen: pre-norm attention and MLP, each added to the residual
//! stream.

use crate::{mlp::Mlp, rmsnorm::RmsNorm};
use gqa::{Attention, Mask, Offset};
use mlx_rs::{error::Result, Array};

/// One decoder layer: `h = x + attention(norm(x))`, `out = h + mlp(norm(h))`.
///
/// Book: week 1, chapter 4 (RMSNorm and the MLP), task 4.
pub struct TransformerBlock {
    input_layernorm: RmsNorm,
    attention: Attention,
    post_attention_layernorm: RmsNorm,
    mlp: Mlp,
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
        TransformerBlock {
            input_layernorm,
            attention,
            post_attention_layernorm,
            mlp,
        }
    }

    /// - `x`: `[B, L, E]`, the residual stream.
    /// - `offset`, `mask`: passed to the attention layer.
    /// - Returns `[B, L, E]`, the residual stream after this layer.
    ///
    /// Book: week 1, chapter 4 (RMSNorm and the MLP), task 4.
    pub fn forward(&self, x: &Array, offset: Offset, mask: Mask) -> Result<Array> {
        let normalized = self.input_layernorm.forward(x)?; // [B, L, E]
        let attended = self.attention.forward(&normalized, offset, mask)?; // [B, L, E]
        let h = x.add(&attended)?; // [B, L, E]
        let normalized = self.post_attention_layernorm.forward(&h)?; // [B, L, E]
        h.add(self.mlp.forward(&normalized)?) // [B, L, E]
    }
}
