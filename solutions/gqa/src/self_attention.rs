//! The attention layer of Llama, Qwen2 and Qwen3: projections, RoPE, grouped-query attention
//! and the output projection.

use crate::{gqa::scaled_dot_product_attention_grouped, AttentionConfig, AttentionWeights, Mask};
use attention::linear;
use mlx_rs::{
    error::{Exception, Result},
    fast, Array,
};
use rope::{shape3, Offset, RoPE};

/// The self-attention layer of a decoder block.
///
/// Book: week 1, chapter 3 (grouped-query attention), tasks 3 and 4.
pub struct Attention {
    config: AttentionConfig,
    weights: AttentionWeights,
    rope: RoPE,
}

impl Attention {
    /// - Fails (naming the field) when `num_heads` is not a positive multiple of `num_kv_heads`,
    ///   `head_dim` is odd, or a weight's shape does not fit `config`.
    ///
    /// Book: week 1, chapter 3 (grouped-query attention), task 3.
    pub fn new(config: AttentionConfig, weights: AttentionWeights) -> Result<Self> {
        let AttentionConfig {
            hidden_size,
            num_heads,
            num_kv_heads,
            head_dim,
            ..
        } = config;
        if num_kv_heads <= 0 || num_heads % num_kv_heads != 0 {
            return Err(Exception::custom(format!(
                "num_heads {num_heads} must be a positive multiple of num_kv_heads {num_kv_heads}"
            )));
        }
        if head_dim <= 0 || head_dim % 2 != 0 {
            return Err(Exception::custom(format!(
                "head_dim {head_dim} must be positive and even (RoPE rotates pairs)"
            )));
        }
        let (q_out, kv_out) = (num_heads * head_dim, num_kv_heads * head_dim);
        let expected: [(&str, Option<&Array>, &[i32]); 9] = [
            ("q_proj", Some(&weights.q_proj), &[q_out, hidden_size]),
            ("k_proj", Some(&weights.k_proj), &[kv_out, hidden_size]),
            ("v_proj", Some(&weights.v_proj), &[kv_out, hidden_size]),
            ("o_proj", Some(&weights.o_proj), &[hidden_size, q_out]),
            ("q_bias", weights.q_bias.as_ref(), &[q_out]),
            ("k_bias", weights.k_bias.as_ref(), &[kv_out]),
            ("v_bias", weights.v_bias.as_ref(), &[kv_out]),
            ("q_norm", weights.q_norm.as_ref(), &[head_dim]),
            ("k_norm", weights.k_norm.as_ref(), &[head_dim]),
        ];
        for (name, weight, shape) in expected {
            if let Some(weight) = weight.filter(|weight| weight.shape() != shape) {
                return Err(Exception::custom(format!(
                    "{name} has shape {:?}, expected {shape:?}",
                    weight.shape()
                )));
            }
        }
        let rope = RoPE::new(head_dim, config.rope_theta, false);
        Ok(Attention {
            config,
            weights,
            rope,
        })
    }

    /// - `x`: `[B, L, E]`, the normalized residual stream.
    /// - `offset`: the position of `x[:, 0]`, for RoPE.
    /// - `mask`: `Mask::Causal` for a prompt; see
    ///   [`scaled_dot_product_attention_grouped`](crate::scaled_dot_product_attention_grouped).
    /// - Returns `[B, L, E]`, to be added to the residual stream.
    ///
    /// Book: week 1, chapter 3 (grouped-query attention), tasks 3 and 4.
    pub fn forward(&self, x: &Array, offset: Offset, mask: Mask) -> Result<Array> {
        let [batch, length, hidden] = shape3(x, "attention", "x of shape [B, L, E]")?;
        if hidden != self.config.hidden_size {
            return Err(Exception::custom(format!(
                "x has {hidden} features, the attention layer expects hidden_size {}",
                self.config.hidden_size
            )));
        }
        let AttentionConfig {
            num_heads,
            num_kv_heads,
            head_dim,
            rms_norm_eps,
            ..
        } = self.config;
        let w = &self.weights;
        // [B, L, E] -> [B, L, H, D]
        let split_heads = |weight: &Array, bias: Option<&Array>, heads: i32| {
            linear(x, weight, bias)?.reshape(&[batch, length, heads, head_dim])
        };
        let mut q = split_heads(&w.q_proj, w.q_bias.as_ref(), num_heads)?; // [B, L, H_q, D]
        let mut k = split_heads(&w.k_proj, w.k_bias.as_ref(), num_kv_heads)?; // [B, L, H_kv, D]
        let v = split_heads(&w.v_proj, w.v_bias.as_ref(), num_kv_heads)?; // [B, L, H_kv, D]

        // Qwen3 normalizes every query and key head over D, before RoPE.
        if let Some(norm) = &w.q_norm {
            q = fast::rms_norm(&q, Some(norm), rms_norm_eps)?;
        }
        if let Some(norm) = &w.k_norm {
            k = fast::rms_norm(&k, Some(norm), rms_norm_eps)?;
        }
        let q = self.rope.apply(&q, offset)?.swap_axes(1, 2)?; // [B, H_q, L, D]
        let k = self.rope.apply(&k, offset)?.swap_axes(1, 2)?; // [B, H_kv, L, D]
        let v = v.swap_axes(1, 2)?; // [B, H_kv, L, D]

        let out = scaled_dot_product_attention_grouped(&q, &k, &v, None, mask)?; // [B, H_q, L, D]
        let merged = out
            .swap_axes(1, 2)? // [B, L, H_q, D]
            .reshape(&[batch, length, num_heads * head_dim])?; // [B, L, H_q * D]
        linear(&merged, &w.o_proj, None) // [B, L, E]
    }
}
