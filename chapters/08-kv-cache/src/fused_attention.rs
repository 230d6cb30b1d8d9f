//! The cached attention layer on MLX's fused kernels: the engine's fast path, the same math as
//! your `CachedAttention::forward` in `src/attention.rs`. Given.

use crate::{attention_layers::batch_and_length, CachedAttention, LayerCache, Linear};
use mlx_rs::{error::Result, fast, Array};
use rmsnorm_mlp::AttentionConfig;
use rope::Offset;

impl CachedAttention {
    /// [`CachedAttention::forward`] with MLX's fused RoPE and attention kernels
    /// ([`crate::Kernels::Fused`]): the same math, in a few ops instead of dozens.
    pub fn forward_fused(&self, x: &Array, cache: &mut dyn LayerCache) -> Result<Array> {
        let (batch, length) = batch_and_length(x)?;
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
        // MLX takes either the base or the periods themselves (Llama 3's scaled ones).
        let (base, periods) = match &self.rope_periods {
            Some(periods) => (None, Some(periods)),
            None => (Some(rope_theta), None),
        };
        let rotate = |x: &Array| match cache.positions() {
            Offset::Start(start) => fast::rope(x, head_dim, false, base, 1.0, start, periods),
            Offset::PerRow(starts) => {
                let starts = Array::from_slice(starts, &[batch]); // [B]
                fast::rope_dynamic(x, head_dim, false, base, 1.0, &starts, periods)
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
}
