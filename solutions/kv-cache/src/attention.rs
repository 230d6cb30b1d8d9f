//! The attention layer of week 1, now with a KV cache: the new tokens' keys and values join the
//! cached ones, and the new queries attend over all of them.

use crate::{LayerCache, Linear};
use gqa::{scaled_dot_product_attention_grouped, Mask};
use mlx_rs::{
    error::{Exception, Result},
    fast, Array,
};
use rmsnorm_mlp::AttentionConfig;
use rope::{Offset, RoPE};

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

    /// [`CachedAttention::forward`] with MLX's fused RoPE and attention kernels
    /// ([`crate::Kernels::Fused`]): the same math, in a few ops instead of dozens.
    ///
    /// Given.
    pub fn forward_fused(&self, x: &Array, cache: &mut dyn LayerCache) -> Result<Array> {
        let &[batch, length, _] = x.shape() else {
            return Err(Exception::custom(format!(
                "attention expects x of shape [B, L, E], got {:?}",
                x.shape()
            )));
        };
        let AttentionConfig {
            num_heads,
            num_kv_heads,
            head_dim,
            rope_theta,
            rms_norm_eps,
            ..
        } = self.config;
        let layers = &self.layers;
        // [B, L, E] -> [B, H, L, D]: MLX's kernels take positions along axis 2.
        let heads_first = |projection: &dyn Linear, heads: i32, norm: Option<&Array>| {
            let split = projection
                .forward(x)?
                .reshape(&[batch, length, heads, head_dim])?;
            let split = match norm {
                Some(norm) => fast::rms_norm(&split, Some(norm), rms_norm_eps)?,
                None => split,
            };
            split.swap_axes(1, 2)
        };
        let rotate = |x: &Array| match cache.positions() {
            Offset::Start(start) => fast::rope(x, head_dim, false, rope_theta, 1.0, start, None),
            Offset::PerRow(starts) => {
                let starts = Array::from_slice(starts, &[batch]); // [B]
                fast::rope_dynamic(x, head_dim, false, rope_theta, 1.0, &starts, None)
            }
        };
        let q = rotate(&heads_first(
            layers.q_proj.as_ref(),
            num_heads,
            layers.q_norm.as_ref(),
        )?)?; // [B, H_q, L, D]
        let k = rotate(&heads_first(
            layers.k_proj.as_ref(),
            num_kv_heads,
            layers.k_norm.as_ref(),
        )?)?; // [B, H_kv, L, D]
        let v = heads_first(layers.v_proj.as_ref(), num_kv_heads, None)?; // [B, H_kv, L, D]

        let (k, v) = cache.update_and_fetch(&k, &v)?; // [B, H_kv, S, D]
        let scale = 1.0 / (head_dim as f32).sqrt();
        let out = match cache.mask(length)? {
            // The kernel takes an additive mask only in the queries' dtype (bfloat16 models).
            Some(mask) => {
                let mask = mask.as_dtype(q.dtype())?;
                fast::scaled_dot_product_attention(&q, &k, &v, scale, &mask, None)?
            }
            None if length > 1 => fast::scaled_dot_product_attention(
                &q,
                &k,
                &v,
                scale,
                fast::ScaledDotProductAttentionMask::Causal,
                None,
            )?,
            None => fast::scaled_dot_product_attention(
                &q,
                &k,
                &v,
                scale,
                None::<fast::ScaledDotProductAttentionMask>,
                None,
            )?,
        }; // [B, H_q, L, D]
        let merged = out
            .swap_axes(1, 2)? // [B, L, H_q, D]
            .reshape(&[batch, length, num_heads * head_dim])?; // [B, L, H_q * D]
        layers.o_proj.forward(&merged) // [B, L, E]
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
        let &[batch, length, _] = x.shape() else {
            return Err(Exception::custom(format!(
                "attention expects x of shape [B, L, E], got {:?}",
                x.shape()
            )));
        };
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
