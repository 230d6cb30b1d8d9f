//! What a model's `config.json` says: the architecture and the sizes the layers need.

/// The architectures this engine runs; all are decoder-only transformers with RMSNorm, RoPE,
/// grouped-query attention and a SwiGLU MLP.
///
/// Book: week 1, chapter 5 (loading a model), task 1.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Architecture {
    /// `LlamaForCausalLM` (SmolLM2, Llama 3): no biases.
    Llama,
    /// `Qwen2ForCausalLM`: biases on q/k/v.
    Qwen2,
    /// `Qwen3ForCausalLM`: per-head RMSNorm on q and k.
    Qwen3,
}

/// What a model's `config.json` says about its shape.
///
/// Book: week 1, chapter 5 (loading a model), task 1.
#[derive(Clone, Debug, PartialEq)]
pub struct ModelConfig {
    pub architecture: Architecture,
    pub vocab_size: i32,
    pub hidden_size: i32,
    pub intermediate_size: i32,
    pub num_hidden_layers: i32,
    pub num_attention_heads: i32,
    pub num_key_value_heads: i32,
    /// `head_dim` when given, else `hidden_size / num_attention_heads`.
    pub head_dim: i32,
    pub rope_theta: f32,
    pub rms_norm_eps: f32,
    /// The output layer reuses the embedding matrix (no `lm_head.weight`).
    pub tie_word_embeddings: bool,
    pub max_position_embeddings: i32,
    /// Token ids that end generation (`eos_token_id`: one id or a list).
    pub eos_token_ids: Vec<u32>,
}
