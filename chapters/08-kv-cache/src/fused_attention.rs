//! The cached attention layer on MLX's fused kernels: the engine's fast path, the same math as
//! your `CachedAttention::forward` in `src/attention.rs`. Given.

use crate::{attention_layers::batch_and_length, CachedAttention, LayerCache};
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
        // [B, L, H * D] -> [B, L, H, D]
        let split_heads =
            |projected: &Array, heads: i32| projected.reshape(&[batch, length, heads, head_dim]);
        // One matmul for q, k and v when the model joined them at load and one token of one
        // row runs: its q, k and v are then contiguous views of the joined output. For larger
        // shapes the views are strided, which MLX 0.32.2's CUDA kernels read wrongly (garbage
        // logits and illegal memory accesses on an H100), so those run the three matmuls.
        let (q, k, v) = match &self.qkv_proj {
            Some(qkv_proj) if batch * length == 1 => {
                let heads = split_heads(&qkv_proj.forward(x)?, num_heads + 2 * num_kv_heads)?;
                let mut parts = heads
                    .split_at_indices(&[num_heads, num_heads + num_kv_heads], 2)?
                    .into_iter(); // [B, L, H_q | H_kv | H_kv, D]
                let mut next = || parts.next().expect("three parts");
                (next(), next(), next())
            }
            _ => (
                split_heads(&layers.q_proj.forward(x)?, num_heads)?,
                split_heads(&layers.k_proj.forward(x)?, num_kv_heads)?,
                split_heads(&layers.v_proj.forward(x)?, num_kv_heads)?,
            ),
        };
        // [B, L, H, D] -> [B, H, L, D]: MLX's kernels take positions along axis 2.
        let heads_first = |split: Array, norm: Option<&Array>| {
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
        // Rows at different positions upload their starts once, for both q and k.
        let (shared_start, row_starts) = match cache.positions() {
            Offset::Start(start) => (start, None),
            Offset::PerRow(starts) => (0, Some(Array::from_slice(starts, &[batch]))), // [B]
        };
        let rotate = |x: &Array| match &row_starts {
            Some(starts) => fast::rope_dynamic(x, head_dim, false, base, 1.0, starts, periods),
            None => fast::rope(x, head_dim, false, base, 1.0, shared_start, periods),
        };
        let q = rotate(&heads_first(q, layers.q_norm.as_ref())?)?; // [B, H_q, L, D]
        let k = rotate(&heads_first(k, layers.k_norm.as_ref())?)?; // [B, H_kv, L, D]
        let v = heads_first(v, None)?; // [B, H_kv, L, D]

        let scale = 1.0 / (head_dim as f32).sqrt();
        // A cache that can attend over its own storage in one kernel (chapter 12's pages on a
        // CUDA GPU) skips gathering its keys into one dense batch.
        let out = match cache.attend_fused(&q, &k, &v, scale)? {
            Some(out) => out,
            None => attend_over_fetched(cache, &q, &k, &v, scale)?,
        }; // [B, H_q, L, D]
        let merged = out
            .swap_axes(1, 2)? // [B, L, H_q, D]
            .reshape(&[batch, length, num_heads * head_dim])?; // [B, L, H_q * D]
        layers.o_proj.forward(&merged) // [B, L, E]
    }
}

/// MLX's fused attention of `q` `[B, H_q, L, D]` over every key and value of `cache`, after
/// appending the new ones `k`, `v` `[B, H_kv, L, D]`: `[B, H_q, L, D]`.
fn attend_over_fetched(
    cache: &mut dyn LayerCache,
    q: &Array,
    k: &Array,
    v: &Array,
    scale: f32,
) -> Result<Array> {
    let length = q.dim(2);
    let (k, v) = cache.update_and_fetch(k, v)?; // [B, H_kv, S, D]
    Ok(match cache.mask(length)? {
        // The kernel takes an additive mask only in the queries' dtype (bfloat16 models).
        Some(mask) => {
            let mask = mask.as_dtype(q.dtype())?;
            fast::scaled_dot_product_attention(q, &k, &v, scale, &mask, None)?
        }
        None if length > 1 => fast::scaled_dot_product_attention(
            q,
            &k,
            &v,
            scale,
            fast::ScaledDotProductAttentionMask::Causal,
            None,
        )?,
        None => fast::scaled_dot_product_attention(
            q,
            &k,
            &v,
            scale,
            None::<fast::ScaledDotProductAttentionMask>,
            None,
        )?,
    })
}
