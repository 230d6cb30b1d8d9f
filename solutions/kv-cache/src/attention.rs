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
        let (batch, length) = batch_and_length(x)?;
        let AttentionConfig {
            num_heads,
            num_kv_heads,
            head_dim,
            rms_norm_eps,
            ..
        } = self.config;
        let layers = &self.layers;
        // [B, L, E] -> [B, L, H, D]
        let split_heads = |projection: &dyn Linear, heads: i32| {
            projection
                .forward(x)?
                .reshape(&[batch, length, heads, head_dim])
        };
        let mut q = split_heads(layers.q_proj.as_ref(), num_heads)?; // [B, L, H_q, D]
        let mut k = split_heads(layers.k_proj.as_ref(), num_kv_heads)?; // [B, L, H_kv, D]
        let v = split_heads(layers.v_proj.as_ref(), num_kv_heads)?; // [B, L, H_kv, D]
        if let Some(norm) = &layers.q_norm {
            q = fast::rms_norm(&q, Some(norm), rms_norm_eps)?;
        }
        if let Some(norm) = &layers.k_norm {
            k = fast::rms_norm(&k, Some(norm), rms_norm_eps)?;
        }
        let q = self.rope.apply(&q, cache.positions())?.swap_axes(1, 2)?; // [B, H_q, L, D]
        let k = self.rope.apply(&k, cache.positions())?.swap_axes(1, 2)?; // [B, H_kv, L, D]
        let v = v.swap_axes(1, 2)?; // [B, H_kv, L, D]

        let (k, v) = cache.update_and_fetch(&k, &v)?; // [B, H_kv, S, D], S = cached + L
        let cache_mask = cache.mask(length)?;
        let mask = match &cache_mask {
            Some(mask) => Mask::Array(mask),
            // One new token sees every key; several see the cached ones and the new ones up to
            // themselves.
            None if length > 1 => Mask::Causal,
            None => Mask::None,
        };
        let out = scaled_dot_product_attention_grouped(&q, &k, &v, None, mask)?; // [B, H_q, L, D]
        let merged = out
            .swap_axes(1, 2)? // [B, L, H_q, D]
            .reshape(&[batch, length, num_heads * head_dim])?; // [B, L, H_q * D]
        layers.o_proj.forward(&merged) // [B, L, E]
    }
}
