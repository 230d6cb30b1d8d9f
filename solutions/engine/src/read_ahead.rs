//! Greedy decoding one step ahead: the device runs step `n + 1` while the host reads token `n`
//! back, streams its text and builds nothing in between.
//!
//! Chapter 8's [`CachedModel`](kv_cache::CachedModel) waits at every step: the host builds the
//! graph, MLX evaluates it, the host reads the token, and only then builds the next graph, so the
//! device idles while the host works and the other way round. When the next token is the argmax,
//! the host does not need to read it to build the next step: the argmax can feed the next forward
//! as a lazy array. So each call queues the following step with `async_eval` before returning,
//! and the caller's read waits only for the current one. mlx-lm's `generate_step` does the same.
//! If the caller chooses another token after all (a stop, a different sampler), the queued step is
//! dropped from the cache and the chosen token runs instead.

use decode::{DecodeError, LanguageModel, ModelConfig};
use kv_cache::{KvCache, Model};
use mlx_rs::{
    error::Exception,
    ops::{self, indexing::IndexOp},
    transforms::async_eval,
    Array,
};

/// The step queued on the device: the token [`ReadAhead`] expects the caller to choose, and the
/// logits after it.
struct Queued {
    /// `[]` uint32: the argmax of the last logits, EOS masked when the caller ignores it.
    token: Array,
    /// `[V]`: the logits after `token`, whose keys and values the cache already holds.
    logits: Array,
}

/// A [`LanguageModel`] for greedy decoding that keeps the next step queued on the device.
pub struct ReadAhead<'m> {
    model: &'m Model,
    cache: Vec<KvCache>,
    /// The tokens whose keys and values the cache holds, the queued token excluded.
    seen: Vec<u32>,
    queued: Option<Queued>,
    /// `[V]`: `-inf` at EOS ids when the caller ignores EOS (as [`decode::generate`] masks them),
    /// `0` elsewhere.
    eos_mask: Array,
}

impl<'m> ReadAhead<'m> {
    /// `ignore_eos` as in the [`decode::GenerationOptions`] of the generation it serves.
    pub fn new(model: &'m Model, ignore_eos: bool) -> Self {
        let config = model.config();
        let mask: Vec<f32> = (0..config.vocab_size as u32)
            .map(|id| {
                if ignore_eos && config.eos_token_ids.contains(&id) {
                    f32::NEG_INFINITY
                } else {
                    0.0
                }
            })
            .collect();
        ReadAhead {
            model,
            cache: model.new_cache(),
            seen: Vec::new(),
            queued: None,
            eos_mask: Array::from_slice(&mask, &[mask.len() as i32]),
        }
    }

    /// The cache, one [`KvCache`] per layer, holding exactly the tokens seen: a queued step is
    /// dropped first.
    pub fn cache(&mut self) -> Result<&[KvCache], DecodeError> {
        self.drop_queued()?;
        Ok(&self.cache)
    }

    fn drop_queued(&mut self) -> Result<(), DecodeError> {
        if self.queued.take().is_some() {
            for layer in &mut self.cache {
                layer.truncate(self.seen.len() as i32)?;
            }
        }
        Ok(())
    }

    /// Runs the tokens of `sequence` the cache does not hold (keeping the longest common prefix,
    /// and running at least one token); returns the last position's logits `[V]`.
    fn run(&mut self, sequence: &[u32]) -> Result<Array, DecodeError> {
        self.drop_queued()?;
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

    /// The queued logits, if `sequence` is what was seen plus the queued token.
    fn take_queued(&mut self, sequence: &[u32]) -> Result<Option<Array>, DecodeError> {
        let Some((last, before)) = sequence.split_last() else {
            return Ok(None);
        };
        let Some(queued) = &self.queued else {
            return Ok(None);
        };
        if before != self.seen.as_slice() {
            return Ok(None);
        }
        // Already evaluated: the caller's own read of this step waited for it.
        let guessed = queued
            .token
            .try_item_exact::<u32>()
            .map_err(|error| Exception::custom(error.to_string()))?;
        if guessed != *last {
            return Ok(None);
        }
        let queued = self.queued.take().expect("checked above");
        self.seen.push(guessed);
        Ok(Some(queued.logits))
    }
}

impl LanguageModel for ReadAhead<'_> {
    fn config(&self) -> &ModelConfig {
        self.model.config()
    }

    fn next_token_logits(&mut self, sequence: &[u32]) -> Result<Array, DecodeError> {
        let logits = match self.take_queued(sequence)? {
            Some(logits) => logits,
            None => self.run(sequence)?,
        }; // [V]
           // Queue the step after the argmax before the caller reads it.
        let token = ops::indexing::argmax(ops::add(&logits, &self.eos_mask)?, None)?; // [] uint32
        let input = token.reshape(&[1, 1])?; // [1, 1]
        let next = self.model.forward(&input, &mut self.cache)?.index((0, -1)); // [V]
        async_eval([&token, &next])?;
        self.queued = Some(Queued {
            token,
            logits: next,
        });
        Ok(logits)
    }
}
