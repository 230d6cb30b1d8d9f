//! Generation with the cache: the prompt runs once (prefill), then one token per step. The
//! [`CachedModel`] it drives is in `src/cached_model.rs`.

use crate::CachedModel;
use decode::{DecodeError, LanguageModel};
use load::ModelConfig;
use mlx_rs::{ops::indexing::IndexOp, Array};

impl LanguageModel for CachedModel<'_> {
    fn config(&self) -> &ModelConfig {
        self.model.config()
    }

    /// - Runs only the tokens of `sequence` the cache does not hold yet: the whole prompt the
    ///   first time (prefill), one token per step after.
    /// - A `sequence` that does not continue what the cache holds (a new prompt) keeps the
    ///   longest common prefix: truncate the cache to it, and run the rest. At least one token
    ///   must run, since its logits are the answer.
    /// - Returns the last position's logits `[V]`.
    ///
    /// Book: week 2, chapter 8 (the KV cache), task 5.
    fn next_token_logits(&mut self, sequence: &[u32]) -> Result<Array, DecodeError> {
        todo!(
            "chapter 8, task 5: truncate to the common prefix, run only the tokens the cache lacks"
        )
    }
}
