//! The whole model: token embedding, the decoder blocks, the final norm and the output layer.

use crate::{load_weights, LoadError, ModelConfig};
use attention::linear;
use mlx_rs::{error::Result, Array};
use rmsnorm_mlp::{
    Attention, AttentionConfig, AttentionWeights, Mask, Mlp, Offset, RmsNorm, TransformerBlock,
};
use std::{collections::HashMap, path::Path};

/// A decoder-only transformer ready to run: `tokens -> logits`.
///
/// Book: week 1, chapter 5 (loading a model), tasks 3 and 4.
pub struct Model {
    config: ModelConfig,
    embed_tokens: Array,
    layers: Vec<TransformerBlock>,
    norm: RmsNorm,
    /// `None` when the output layer is the embedding matrix (`tie_word_embeddings`).
    lm_head: Option<Array>,
}

/// Takes tensors out of the weight map by name, checking their shapes.
struct Tensors(HashMap<String, Array>);

impl Tensors {
    fn take(&mut self, name: &str, expected: &[i32]) -> std::result::Result<Array, LoadError> {
        let tensor = self
            .0
            .remove(name)
            .ok_or_else(|| LoadError::MissingTensor {
                name: name.to_string(),
            })?;
        if tensor.shape() != expected {
            return Err(LoadError::WrongShape {
                name: name.to_string(),
                found: tensor.shape().to_vec(),
                expected: expected.to_vec(),
            });
        }
        Ok(tensor)
    }

    fn take_optional(
        &mut self,
        name: &str,
        expected: &[i32],
    ) -> std::result::Result<Option<Array>, LoadError> {
        if self.0.contains_key(name) {
            self.take(name, expected).map(Some)
        } else {
            Ok(None)
        }
    }
}

impl Model {
    /// Loads `dir/config.json` and the weights in `dir` (see [`load_weights`]).
    ///
    /// Book: week 1, chapter 5 (loading a model), task 3.
    pub fn load(dir: &Path) -> std::result::Result<Self, LoadError> {
        let config = ModelConfig::from_file(&dir.join("config.json"))?;
        Model::from_weights(config, load_weights(dir)?)
    }

    /// Builds the model from tensors named as in Hugging Face checkpoints:
    /// `model.embed_tokens.weight` `[V, E]`; for each layer `n`, `model.layers.{n}.` +
    /// `input_layernorm.weight`, `self_attn.{q,k,v,o}_proj.weight` (+ Qwen2's q/k/v `.bias`,
    /// Qwen3's `self_attn.{q,k}_norm.weight`), `post_attention_layernorm.weight`,
    /// `mlp.{gate,up,down}_proj.weight`; `model.norm.weight`; and `lm_head.weight` unless tied.
    ///
    /// - A tensor that is absent is `LoadError::MissingTensor`, one of the wrong shape
    ///   `LoadError::WrongShape`, each naming the tensor.
    ///
    /// Book: week 1, chapter 5 (loading a model), task 3.
    pub fn from_weights(
        config: ModelConfig,
        weights: HashMap<String, Array>,
    ) -> std::result::Result<Self, LoadError> {
        let mut tensors = Tensors(weights);
        let (vocab, hidden, inner) = (
            config.vocab_size,
            config.hidden_size,
            config.intermediate_size,
        );
        let (q_width, kv_width) = (
            config.num_attention_heads * config.head_dim,
            config.num_key_value_heads * config.head_dim,
        );
        let attention_config = AttentionConfig {
            hidden_size: hidden,
            num_heads: config.num_attention_heads,
            num_kv_heads: config.num_key_value_heads,
            head_dim: config.head_dim,
            rope_theta: config.rope_theta,
            rms_norm_eps: config.rms_norm_eps,
        };

        let embed_tokens = tensors.take("model.embed_tokens.weight", &[vocab, hidden])?;
        let mut layers = Vec::new();
        for n in 0..config.num_hidden_layers {
            let name = |suffix: &str| format!("model.layers.{n}.{suffix}");
            let weights = AttentionWeights {
                q_proj: tensors.take(&name("self_attn.q_proj.weight"), &[q_width, hidden])?,
                k_proj: tensors.take(&name("self_attn.k_proj.weight"), &[kv_width, hidden])?,
                v_proj: tensors.take(&name("self_attn.v_proj.weight"), &[kv_width, hidden])?,
                o_proj: tensors.take(&name("self_attn.o_proj.weight"), &[hidden, q_width])?,
                q_bias: tensors.take_optional(&name("self_attn.q_proj.bias"), &[q_width])?,
                k_bias: tensors.take_optional(&name("self_attn.k_proj.bias"), &[kv_width])?,
                v_bias: tensors.take_optional(&name("self_attn.v_proj.bias"), &[kv_width])?,
                q_norm: tensors
                    .take_optional(&name("self_attn.q_norm.weight"), &[config.head_dim])?,
                k_norm: tensors
                    .take_optional(&name("self_attn.k_norm.weight"), &[config.head_dim])?,
            };
            let eps = config.rms_norm_eps;
            layers.push(TransformerBlock::new(
                RmsNorm::new(
                    tensors.take(&name("input_layernorm.weight"), &[hidden])?,
                    eps,
                ),
                Attention::new(attention_config, weights)?,
                RmsNorm::new(
                    tensors.take(&name("post_attention_layernorm.weight"), &[hidden])?,
                    eps,
                ),
                Mlp::new(
                    tensors.take(&name("mlp.gate_proj.weight"), &[inner, hidden])?,
                    tensors.take(&name("mlp.up_proj.weight"), &[inner, hidden])?,
                    tensors.take(&name("mlp.down_proj.weight"), &[hidden, inner])?,
                ),
            ));
        }
        let norm = RmsNorm::new(
            tensors.take("model.norm.weight", &[hidden])?,
            config.rms_norm_eps,
        );
        let lm_head = if config.tie_word_embeddings {
            None
        } else {
            Some(tensors.take("lm_head.weight", &[vocab, hidden])?)
        };
        Ok(Model {
            config,
            embed_tokens,
            layers,
            norm,
            lm_head,
        })
    }

    pub fn config(&self) -> &ModelConfig {
        &self.config
    }

    /// Runs the model on a batch of token sequences.
    ///
    /// - `tokens`: `[B, L]` integer ids, starting at position 0 (no cache yet: chapter 8).
    /// - Returns the logits `[B, L, V]`, float32: position `i` scores the token after `tokens[:, i]`.
    /// - Attention is causal when `L > 1`; a tied model scores with the embedding matrix.
    ///
    /// Book: week 1, chapter 5 (loading a model), task 4.
    pub fn forward(&self, tokens: &Array) -> Result<Array> {
        let length = tokens.shape()[1];
        let mask = if length > 1 { Mask::Causal } else { Mask::None };
        let mut h = self.embed_tokens.take_axis(tokens, 0)?; // [B, L, E]
        for layer in &self.layers {
            h = layer.forward(&h, Offset::Start(0), mask)?; // [B, L, E]
        }
        let h = self.norm.forward(&h)?; // [B, L, E]
        linear(
            &h,
            self.lm_head.as_ref().unwrap_or(&self.embed_tokens),
            None,
        ) // [B, L, V]
    }
}
