//! The model's `config.json`, read into the numbers the layers need.

use crate::{Architecture, LoadError, ModelConfig};
use std::path::Path;

impl ModelConfig {
    /// Reads `config.json` at `path`.
    ///
    /// - `architectures[0]` picks the [`Architecture`]; anything else is
    ///   `LoadError::UnsupportedArchitecture`.
    /// - A missing or mistyped required field is `LoadError::BadConfig` naming the field.
    /// - Optional fields and their defaults: `num_key_value_heads` (= `num_attention_heads`),
    ///   `head_dim`, `rope_theta` (10000), `rms_norm_eps` (1e-6), `tie_word_embeddings` (false),
    ///   `max_position_embeddings` (4096), `eos_token_id` (none).
    ///
    /// Book: week 1, chapter 5 (loading a model), task 1.
    pub fn from_file(path: &Path) -> Result<Self, LoadError> {
        todo!("chapter 5, task 1: read the JSON, pick the architecture, read each field with its default")
    }
}
