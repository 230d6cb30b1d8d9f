//! The KV cache of one attention layer for a batch of sequences of different lengths, which
//! join and leave between steps.
//!
//! Rows are aligned on the right: every row's newest token is in the same column, and a shorter
//! sequence starts later, after columns of padding that the mask hides.
//!
//! ```text
//!            column: 0  1  2  3  4  5      end = 6
//! row 0 (6 tokens):  a  b  c  d  e  f      left_padding 0, next position 6
//! row 1 (2 tokens):  .  .  .  .  x  y      left_padding 4, next position 2
//! ```

use kv_cache::{LayerCache, STEP};
use mlx_rs::{
    error::{Exception, Result},
    ops,
    ops::indexing::{IndexOp, TryIndexMutOp},
    Array,
};
use rope::Offset;

/// One layer's keys and values for `B` sequences.
///
/// Book: week 2, chapter 10 (continuous batching), tasks 1 and 2.
#[derive(Default)]
pub struct BatchKvCache {
    /// `[B, H_kv, capacity, D]`; `None` while the batch is empty.
    keys: Option<Array>,
    values: Option<Array>,
    /// Row `b`'s columns `0..left_padding[b]` are padding.
    left_padding: Vec<i32>,
    /// The column the next token of every row goes to.
    end: i32,
    /// Row `b`'s next position, `end - left_padding[b]`: what RoPE needs.
    positions: Vec<i32>,
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

    fn capacity(&self) -> i32 {
        self.keys.as_ref().map_or(0, |keys| keys.shape()[2])
    }

    fn update_positions(&mut self) {
        self.positions = self.left_padding.iter().map(|pad| self.end - pad).collect();
    }

    /// Adds a sequence as the last row: its keys and values `[1, H_kv, n, D]` (a prefilled
    /// [`KvCache`](kv_cache::KvCache)'s `contents()`).
    ///
    /// - Right-aligns it with the others: when `n` is less than `end` it gets `end - n` columns
    ///   of left padding; when it is more, every other row gets `n - end` more columns of
    ///   padding first, and `end` becomes `n`. Padding is zeros, which the mask hides.
    /// - The first sequence starts the storage with room for `n` rounded up to a multiple of
    ///   [`STEP`] columns.
    /// - Fails when the shape is not `[1, H_kv, n, D]`, or `H_kv` or `D` differ from the rows
    ///   already there; the batch is then unchanged.
    ///
    /// Book: week 2, chapter 10 (continuous batching), task 1.
    pub fn add(&mut self, keys: &Array, values: &Array) -> Result<()> {
        todo!("chapter 10, task 1: right-align the new row with the others, padding on the left with zeros")
    }

    /// Removes row `index` (a finished or cancelled sequence); the rows after it move up.
    ///
    /// - Drops the columns that are padding in every remaining row (as many as the smallest
    ///   left padding), so memory follows the longest sequence still running.
    /// - Removing the last row leaves an empty batch, with no storage.
    /// - Fails when `index` is out of range.
    ///
    /// Book: week 2, chapter 10 (continuous batching), task 1.
    pub fn remove(&mut self, index: usize) -> Result<()> {
        todo!("chapter 10, task 1: drop the row, then the columns that are padding in every remaining row")
    }
}

/// The next multiple of [`STEP`] at or above `length`.
fn round_up(length: i32) -> i32 {
    (length + STEP - 1) / STEP * STEP
}

impl LayerCache for BatchKvCache {
    /// Row `b`'s new tokens start at its own position.
    fn positions(&self) -> Offset<'_> {
        Offset::PerRow(&self.positions)
    }

    /// - `keys`, `values`: `[B, H_kv, L, D]`, `L` new tokens for every row, written at columns
    ///   `end..end + L` (growing the storage in steps of [`STEP`] columns).
    /// - Returns columns `0..end + L` of every row; `end` and every row's position grow by `L`.
    /// - Fails when the batch is empty, or the keys are not `[B, H_kv, L, D]` with one row per
    ///   sequence.
    ///
    /// Book: week 2, chapter 10 (continuous batching), task 2.
    fn update_and_fetch(&mut self, keys: &Array, values: &Array) -> Result<(Array, Array)> {
        todo!("chapter 10, task 2: write the new columns at end..end + L (growing by STEP), return columns 0..end + L")
    }

    /// `[B, 1, L, S]`: `0` where row `b`'s query `i` may see column `j` (`j` is not padding,
    /// `left_padding[b] <= j`, and not in its future, `j <= S - L + i`), `-inf` elsewhere.
    ///
    /// Book: week 2, chapter 10 (continuous batching), task 2.
    fn mask(&self, queries: i32) -> Result<Option<Array>> {
        todo!("chapter 10, task 2: 0 where column j is past row b's padding and not after query i's position, -inf elsewhere")
    }
}
