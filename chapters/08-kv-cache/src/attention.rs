//! The attention layer of week 1, now with a KV cache: the new tokens' keys and values join the
//! cached ones, and the new queries attend over all of them. What the layer holds is in
//! `src/attention_layers.rs`.

use crate::{attention_layers::batch_and_length, CachedAttention, LayerCache, Linear};
use gqa::{scaled_dot_product_attention_grouped, Mask};
use mlx_rs::{error::Result, fast, Array};
use rmsnorm_mlp::AttentionConfig;

impl CachedAttention {
    /// - `x`: `[B, L, E]`, the normalized residual stream of `L` new tokens, which start at
    ///   `cache.positions()`.
    /// - Projects q, k, v (and applies Qwen3's norms) as in chapter 3, rotates q and k at their
    ///   positions, appends k and v to `cache`, and attends over every cached position with the
    ///   cache's mask (or, when it has none, the causal rule): each new token sees the cached ones
    ///   and the new ones up to itself.
    /// - Returns `[B, L, E]`; fails when `x` has another shape (the given `batch_and_length`
    ///   reads `B` and `L`).
    ///
    /// Book: week 2, chapter 8 (the KV cache), task 3.
    pub fn forward(&self, x: &Array, cache: &mut dyn LayerCache) -> Result<Array> {
        todo!(
            "chapter 8, task 3: project, rotate at the cache's positions, update the cache, attend"
        )
    }
}
