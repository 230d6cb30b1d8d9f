//! A small model as the drafter: the [`ModelDrafter`] type, which keeps its own cache. Given:
//! how it proposes is yours, in `src/model_drafter.rs`.

use crate::SpeculativeError;
use kv_cache::{KvCache, Model};
use mlx_rs::{error::Exception, random, Array};
use sampling::SamplingParams;

/// A draft model (smaller, or quantized) with its cache: it runs `k` cheap steps per target
/// step.
///
/// Given; its proposals are yours (book: week 3, chapter 14 (speculative decoding), task 4).
pub struct ModelDrafter<'a> {
    pub(crate) model: &'a Model,
    /// One per layer, holding the keys and values of `seen`.
    pub(crate) cache: Vec<KvCache>,
    /// The tokens the cache holds.
    pub(crate) seen: Vec<u32>,
    /// Temperature 0 drafts greedily; otherwise the draft samples from its own distribution
    /// with the same filters, and reports it (the rejection rule needs it).
    pub(crate) params: SamplingParams,
    /// Split at every draw, as chapter 7's sampler does.
    pub(crate) key: Array,
}

impl<'a> ModelDrafter<'a> {
    /// A drafter for a target of `target_vocab_size` tokens.
    ///
    /// - Fails when the draft model's vocabulary differs from the target's: the target verifies
    ///   draft token ids, so both must read them with the same tokenizer.
    pub fn new(
        model: &'a Model,
        target_vocab_size: i32,
        params: SamplingParams,
    ) -> Result<Self, SpeculativeError> {
        let draft = model.config().vocab_size;
        if draft != target_vocab_size {
            return Err(SpeculativeError::VocabMismatch {
                target: target_vocab_size,
                draft,
            });
        }
        // Its own stream of draws: with the target's seed it would repeat the target's.
        let key = random::key(params.seed.wrapping_add(1))?;
        Ok(ModelDrafter {
            model,
            cache: model.new_cache(),
            seen: Vec::new(),
            params,
            key,
        })
    }

    /// The cache, one [`KvCache`] per layer.
    pub fn cache(&self) -> &[KvCache] {
        &self.cache
    }

    /// The next random key for one draw.
    pub(crate) fn next_key(&mut self) -> Result<Array, Exception> {
        let (draw, next) = random::split(&self.key, 2)?;
        self.key = next;
        Ok(draw)
    }
}
