//! Drafting with a small model: `k` cheap greedy or sampled steps over its own cache, rewound to
//! what the target kept. The drafter's type, [`ModelDrafter`], is in `src/draft_model.rs`.

use crate::{processed_logits, Draft, Drafter, ModelDrafter, SpeculativeError};
use mlx_rs::{
    error::Exception,
    ops::{self, indexing::IndexOp},
    random, Array,
};

impl Drafter for ModelDrafter<'_> {
    /// Runs the draft model `k` steps after `sequence`.
    ///
    /// - Rewind first: keep the longest prefix that the cache's tokens (`seen`) share with
    ///   `sequence`, truncating every layer's cache to it (chapter 8's `truncate`), but at most
    ///   `sequence.len() - 1` tokens, since at least one token must run to give logits.
    /// - Then run the rest of `sequence` in one forward pass, and each drafted token after it,
    ///   one at a time, keeping `seen` equal to what the cache holds. The last drafted token is
    ///   not run: nothing needs its logits yet.
    /// - Choose each token from [`processed_logits`] of the last position (the previous tokens
    ///   are `sequence` and the tokens drafted so far): the argmax at temperature 0, otherwise a
    ///   draw with `random::categorical` and [`ModelDrafter::next_key`], keeping its
    ///   distribution (`softmax`) as the row of [`Draft::probabilities`], `[k, V]`.
    /// - `k` of 0, or an empty `sequence`, drafts nothing and runs nothing.
    ///
    /// Book: week 3, chapter 14 (speculative decoding), task 4.
    fn propose(&mut self, sequence: &[u32], k: usize) -> Result<Draft, SpeculativeError> {
        if k == 0 || sequence.is_empty() {
            return Ok(Draft::default());
        }
        let common = self
            .seen
            .iter()
            .zip(sequence)
            .take_while(|(seen, new)| seen == new)
            .count();
        let keep = common.min(sequence.len() - 1);
        for layer in &mut self.cache {
            layer.truncate(keep as i32)?;
        }
        self.seen.truncate(keep);

        let mut input = sequence[keep..].to_vec();
        let mut previous = sequence.to_vec();
        let mut tokens = Vec::with_capacity(k);
        let mut rows = Vec::new();
        while tokens.len() < k {
            let ids = Array::from_slice(&input, &[1, input.len() as i32]); // [1, L]
            let logits = self.model.forward(&ids, &mut self.cache)?; // [1, L, V]
            self.seen.extend_from_slice(&input);
            let logits = processed_logits(&logits.index((0, -1)), &previous, &self.params)?; // [V]
            let token = if self.params.temperature == 0.0 {
                ops::indexing::argmax(&logits, None)?
            } else {
                rows.push(ops::softmax_axis(&logits, -1, true)?); // [V]
                random::categorical(&logits, None, None, &self.next_key()?)?
            };
            let token = token
                .try_item_cast::<u32>()
                .map_err(|error| Exception::custom(error.to_string()))?;
            tokens.push(token);
            previous.push(token);
            input = vec![token];
        }
        let probabilities = if rows.is_empty() {
            None
        } else {
            Some(ops::stack(&rows, 0)?) // [k, V]
        };
        Ok(Draft {
            tokens,
            probabilities,
        })
    }
}
