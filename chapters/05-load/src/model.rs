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
    // Keep what `forward` needs: the config, the token embedding `[V, E]`, the blocks, the final
    // norm, and the output layer unless it is the embedding matrix (`tie_word_embeddings`).
}

impl Model {
    /// Loads `dir/config.json` and the weights in `dir` (see [`load_weights`]).
    ///
    /// Book: week 1, chapter 5 (loading a model), task 3.
    pub fn load(dir: &Path) -> std::result::Result<Self, LoadError> {
        todo!("chapter 5, task 3: read config.json, load the weights, then from_weights")
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
        todo!("chapter 5, task 3: take every tensor by name, check its shape, build the layers")
    }

    /// The config the model was built from.
    ///
    /// Book: week 1, chapter 5 (loading a model), task 3.
    pub fn config(&self) -> &ModelConfig {
        todo!("chapter 5, task 3: the config you kept")
    }

    /// Runs the model on a batch of token sequences.
    ///
    /// - `tokens`: `[B, L]` integer ids, starting at position 0 (no cache yet: chapter 8).
    /// - Returns the logits `[B, L, V]`, float32: position `i` scores the token after `tokens[:, i]`.
    /// - Attention is causal when `L > 1`; a tied model scores with the embedding matrix.
    ///
    /// Book: week 1, chapter 5 (loading a model), task 4.
    pub fn forward(&self, tokens: &Array) -> Result<Array> {
        todo!("chapter 5, task 4: embed, run every block (causal when L > 1), final norm, output layer")
    }
}
