//! What an attention layer is made of: its sizes (from config.json) and its weights.

use mlx_rs::Array;

/// The sizes of an attention layer, as in a model's config.json.
///
/// Book: week 1, chapter 3 (grouped-query attention), task 3.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AttentionConfig {
    /// `E`, the width of the residual stream (`hidden_size`).
    pub hidden_size: i32,
    /// `H_q` (`num_attention_heads`).
    pub num_heads: i32,
    /// `H_kv`, a divisor of `H_q` (`num_key_value_heads`).
    pub num_kv_heads: i32,
    /// `D`, features per head; `hidden_size / num_heads` unless the config says otherwise.
    pub head_dim: i32,
    /// The RoPE base (`rope_theta`).
    pub rope_theta: f32,
    /// The epsilon of Qwen3's q/k norms (`rms_norm_eps`).
    pub rms_norm_eps: f32,
}

/// The weights of an attention layer, in PyTorch's `[out, in]` layout (HF names in brackets).
///
/// Book: week 1, chapter 3 (grouped-query attention), tasks 3 and 4.
#[derive(Clone, Debug)]
pub struct AttentionWeights {
    /// `[H_q * D, E]` (`self_attn.q_proj.weight`).
    pub q_proj: Array,
    /// `[H_kv * D, E]` (`self_attn.k_proj.weight`).
    pub k_proj: Array,
    /// `[H_kv * D, E]` (`self_attn.v_proj.weight`).
    pub v_proj: Array,
    /// `[E, H_q * D]` (`self_attn.o_proj.weight`).
    pub o_proj: Array,
    /// Qwen2 only: `[H_q * D]` (`self_attn.q_proj.bias`).
    pub q_bias: Option<Array>,
    /// Qwen2 only: `[H_kv * D]` (`self_attn.k_proj.bias`).
    pub k_bias: Option<Array>,
    /// Qwen2 only: `[H_kv * D]` (`self_attn.v_proj.bias`).
    pub v_bias: Option<Array>,
    /// Qwen3 only: `[D]`, an RMSNorm weight for every query head (`self_attn.q_norm.weight`).
    pub q_norm: Option<Array>,
    /// Qwen3 only: `[D]`, an RMSNorm weight for every key head (`self_attn.k_norm.weight`).
    pub k_norm: Option<Array>,
}
