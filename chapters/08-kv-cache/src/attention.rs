//! The attention layer of week 1, now with a KV cache: the new tokens' keys and values join the
//! cached ones, and the new queries attend over all of them.

use crate::{LayerCache, Linear};
use gqa::{scaled_dot_product_attention_grouped, Mask};
use mlx_rs::{
    error::{Exception, Result},
    fast, Array,
};
use rmsnorm_mlp::AttentionConfig;
use rope::RoPE;

/// The projections of an attention layer (HF names `self_attn.{q,k,v,o}_proj`; a projection's bias,
/// Qwen2's, is part of its [`Linear`]), and Qwen3's per-head norms.
///
/// Book: week 2, chapter 8 (the KV cache), task 3.
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
/// Book: week 2, chapter 8 (the KV cache), task 3.
pub struct CachedAttention {
    config: AttentionConfig,
    layers: AttentionLayers,
    rope: RoPE,
}

impl CachedAttention {
    /// Given.
    pub fn new(config: AttentionConfig, layers: AttentionLayers) -> Self {
        let rope = RoPE::new(config.head_dim, config.rope_theta, false);
        CachedAttention {
            config,
            layers,
            rope,
        }
    }

    pub fn layers(&self) -> &AttentionLayers {
        &self.layers
    }

    /// - `x`: `[B, L, E]`, the normalized residual stream of `L` new tokens, which start at
    ///   `cache.positions()`.
    /// - Projects q, k, v (and applies Qwen3's norms) as in chapter 3, rotates q and k at their
    ///   positions, appends k and v to `cache`, and attends over every cached position with the
    ///   cache's mask (or, when it has none, the causal rule): each new token sees the cached ones
    ///   and the new ones up to itself.
    /// - Returns `[B, L, E]`.
    ///
    /// Book: week 2, chapter 8 (the KV cache), task 3.
    pub fn forward(&self, x: &Array, cache: &mut dyn LayerCache) -> Result<Array> {
        todo!(
            "chapter 8, task 3: project, rotate at the cache's positions, update the cache, attend"
        )
    }
}
