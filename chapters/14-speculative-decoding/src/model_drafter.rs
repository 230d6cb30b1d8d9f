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
        todo!("chapter 14, task 4: truncate the cache to the prefix it shares with sequence, run the rest, then draft k tokens one step at a time")
    }
}
