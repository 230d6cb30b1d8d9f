//! What an attention layer of the week-2 model holds: its projections (and Qwen3's norms), its
//! config and its RoPE. Given: your `CachedAttention::forward` is in `src/attention.rs`.

use crate::Linear;
use mlx_rs::{error::Result, Array};
use rmsnorm_mlp::AttentionConfig;
use rope::{shape3, RoPE};

/// The projections of an attention layer (HF names `self_attn.{q,k,v,o}_proj`; a projection's bias,
/// Qwen2's, is part of its [`Linear`]), and Qwen3's per-head norms.
///
/// Given.
pub struct AttentionLayers {
    /// `[H_q * D, E]`.
    pub q_proj: Box<dyn Linear>,
    /// `[H_kv * D, E]`.
    pub k_proj: Box<dyn Linear>,
    /// `[H_kv * D, E]`.
    pub v_proj: Box<dyn Linear>,
    /// `[E, H_q * D]`.
    pub o_proj: Box<dyn Linear>,
    /// Qwen3 only: `[D]` (`self_attn.q_norm.weight`).
    pub q_norm: Option<Array>,
    /// Qwen3 only: `[D]` (`self_attn.k_norm.weight`).
    pub k_norm: Option<Array>,
}

/// Self-attention over the cached positions and the new ones.
///
/// Given; its forward pass is yours (book: week 2, chapter 8 (the KV cache), task 3).
pub struct CachedAttention {
    pub(crate) config: AttentionConfig,
    pub(crate) layers: AttentionLayers,
    pub(crate) rope: RoPE,
    /// `[D / 2]` RoPE periods that replace `theta^(2i/D)` in the fused kernel (Llama 3's
    /// scaling, `src/rope_scaling.rs`); `None` for plain RoPE.
    pub(crate) rope_periods: Option<Array>,
    /// `[(H_q + 2 H_kv) * D, E]`: q, k and v joined, for one matmul in the fused path
    /// (`src/fused_attention.rs`); `None` when the checkpoint stores them in different formats.
    pub(crate) qkv_proj: Option<Box<dyn Linear>>,
}

impl CachedAttention {
    pub fn new(config: AttentionConfig, layers: AttentionLayers) -> Self {
        let rope = RoPE::new(config.head_dim, config.rope_theta, false);
        CachedAttention {
            config,
            layers,
            rope,
            rope_periods: None,
            qkv_proj: None,
        }
    }

    pub fn layers(&self) -> &AttentionLayers {
        &self.layers
    }
}

/// `(B, L)` of an attention layer's input `x` `[B, L, E]`; fails on any other shape.
pub(crate) fn batch_and_length(x: &Array) -> Result<(i32, i32)> {
    let [batch, length, _] = shape3(x, "attention", "x of shape [B, L, E]")?;
    Ok((batch, length))
}
