//! Where the batched KV cache keeps the keys and values of one attention layer for a batch of
//! sequences of different lengths, which join and leave between steps: the [`BatchKvCache`]
//! type, its layout, and what it tells about itself. Given: your code in `src/batch_cache.rs`
//! adds and removes rows, writes new tokens and builds the mask.
//!
//! Rows are aligned on the right: every row's newest token is in the same column, and a shorter
//! sequence starts later, after columns of padding that the mask hides.
//!
//! ```text
//!            column: 0  1  2  3  4  5      end = 6
//! row 0 (6 tokens):  a  b  c  d  e  f      left_padding 0, next position 6
//! row 1 (2 tokens):  .  .  .  .  x  y      left_padding 4, next position 2
//! ```

use kv_cache::STEP;
use mlx_rs::Array;

/// One layer's keys and values for `B` sequences.
///
/// Given; filling it is yours (book: week 2, chapter 10 (continuous batching), tasks 1 and 2).
#[derive(Default)]
pub struct BatchKvCache {
    /// `[B, H_kv, capacity, D]`; `None` while the batch is empty.
    pub(crate) keys: Option<Array>,
    pub(crate) values: Option<Array>,
    /// Row `b`'s columns `0..left_padding[b]` are padding.
    pub(crate) left_padding: Vec<i32>,
    /// The column the next token of every row goes to.
    pub(crate) end: i32,
    /// Row `b`'s next position, `end - left_padding[b]`: what RoPE needs.
    pub(crate) positions: Vec<i32>,
}

impl BatchKvCache {
    pub fn new() -> Self {
        BatchKvCache::default()
    }

    /// `B`, the number of sequences.
    pub fn len(&self) -> usize {
        self.left_padding.len()
    }

    pub fn is_empty(&self) -> bool {
        self.left_padding.is_empty()
    }

    /// How many tokens each row holds.
    pub fn lengths(&self) -> &[i32] {
        &self.positions
    }

    /// The bytes the storage takes: keys and values at full capacity.
    pub fn nbytes(&self) -> usize {
        [&self.keys, &self.values]
            .into_iter()
            .flatten()
            .map(Array::nbytes)
            .sum()
    }

    /// How many columns fit before the storage must grow.
    pub(crate) fn capacity(&self) -> i32 {
        self.keys.as_ref().map_or(0, |keys| keys.shape()[2])
    }

    /// Recomputes every row's position from `end` and `left_padding`: call it after changing
    /// either.
    pub(crate) fn update_positions(&mut self) {
        self.positions = self.left_padding.iter().map(|pad| self.end - pad).collect();
    }
}

/// The next multiple of [`STEP`] at or above `length`.
pub(crate) fn round_up(length: i32) -> i32 {
    (length + STEP - 1) / STEP * STEP
}
