//! Filling the batched KV cache (its storage, [`BatchKvCache`], is in
//! `src/batch_cache_storage.rs`): sequences join and leave the batch as rows, and every step
//! writes each row's new keys and values and masks what each row may see.

use crate::{batch_cache_storage::round_up, BatchKvCache};
use kv_cache::LayerCache;
use mlx_rs::{
    error::{Exception, Result},
    ops,
    ops::indexing::{IndexOp, TryIndexMutOp},
    Array,
};
use rope::{shape4, Offset};

impl BatchKvCache {
    /// Adds a sequence as the last row: its keys and values `[1, H_kv, n, D]` (a prefilled
    /// [`KvCache`](kv_cache::KvCache)'s `contents()`).
    ///
    /// - Right-aligns it with the others: when `n` is less than `end` it gets `end - n` columns
    ///   of left padding; when it is more, every other row gets `n - end` more columns of
    ///   padding first, and `end` becomes `n`. Padding is zeros, which the mask hides.
    /// - The first sequence starts the storage with room for `n` rounded up to a multiple of
    ///   [`STEP`](kv_cache::STEP) columns.
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

impl LayerCache for BatchKvCache {
    /// Row `b`'s new tokens start at its own position. Given.
    fn positions(&self) -> Offset<'_> {
        Offset::PerRow(&self.positions)
    }

    /// - `keys`, `values`: `[B, H_kv, L, D]`, `L` new tokens for every row, written at columns
    ///   `end..end + L` (growing the storage in steps of [`STEP`](kv_cache::STEP) columns).
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
