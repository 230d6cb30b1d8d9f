//! Generation with the cache: the prompt runs once (prefill), then one token per step.

use crate::{KvCache, Model};
use decode::{DecodeError, LanguageModel};
use load::ModelConfig;
use mlx_rs::{ops::indexing::IndexOp, Array};

/// A [`Model`] with its cache: what chapter 6's `generate` drives in week 2.
///
/// Book: week 2, chapter 8 (the KV cache), task 5.
pub struct CachedModel<'a> {
    model: &'a Model,
    cache: Vec<KvCache>,
    /// The tokens whose keys and values the cache holds.
    seen: Vec<u32>,
}

impl<'a> CachedModel<'a> {
    /// Given.
    pub fn new(model: &'a Model) -> Self {
        CachedModel {
            model,
            cache: model.new_cache(),
            seen: Vec::new(),
        }
    }

    /// The cache, one [`KvCache`] per layer.
    pub fn cache(&self) -> &[KvCache] {
        &self.cache
    }
}

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
        let common = self
            .seen
            .iter()
            .zip(sequence)
            .take_while(|(seen, new)| seen == new)
            .count();
        let keep = common.min(sequence.len().saturating_sub(1));
        for layer in &mut self.cache {
            layer.truncate(keep as i32)?;
        }
        self.seen.truncate(keep);
        let new = &sequence[keep..];
        let input = Array::from_slice(new, &[1, new.len() as i32]); // [1, L] uint32
        let logits = self.model.forward(&input, &mut self.cache)?; // [1, L, V]
        self.seen.extend_from_slice(new);
        Ok(logits.index((0, -1))) // [V]
    }
}
