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
        let &[1, heads, length, head_dim] = keys.shape() else {
            return Err(Exception::custom(format!(
                "a sequence joins the batch as [1, H_kv, n, D], got {:?}",
                keys.shape()
            )));
        };
        let (Some(batch_keys), Some(batch_values)) = (&self.keys, &self.values) else {
            let capacity = round_up(length);
            let pad = |new: &Array| -> Result<Array> {
                let free = ops::zeros_dtype(&[1, heads, capacity - length, head_dim], new.dtype())?;
                ops::concatenate(&[new.clone(), free], 2) // [1, H_kv, capacity, D]
            };
            self.keys = Some(pad(keys)?);
            self.values = Some(pad(values)?);
            self.left_padding = vec![0];
            self.end = length;
            self.update_positions();
            return Ok(());
        };
        let shape = batch_keys.shape().to_vec(); // [B, H_kv, capacity, D]
        if [shape[1], shape[3]] != [heads, head_dim] {
            return Err(Exception::custom(format!(
                "the batch holds [B, H_kv, _, D] = {shape:?}, the new sequence {:?}",
                keys.shape()
            )));
        }
        let (mut batch_keys, mut batch_values) = (batch_keys.clone(), batch_values.clone());
        if length > self.end {
            // Shift every row right, so that the newest columns line up with the new sequence.
            let shift = length - self.end;
            let shift_right = |stored: &Array| -> Result<Array> {
                let zeros = ops::zeros_dtype(&[shape[0], heads, shift, head_dim], stored.dtype())?;
                ops::concatenate(&[zeros, stored.clone()], 2)
            };
            batch_keys = shift_right(&batch_keys)?;
            batch_values = shift_right(&batch_values)?;
            self.left_padding.iter_mut().for_each(|pad| *pad += shift);
            self.end = length;
        }
        let capacity = batch_keys.shape()[2];
        let padding = self.end - length;
        let row = |new: &Array| -> Result<Array> {
            let before = ops::zeros_dtype(&[1, heads, padding, head_dim], new.dtype())?;
            let after = ops::zeros_dtype(&[1, heads, capacity - self.end, head_dim], new.dtype())?;
            ops::concatenate(&[before, new.clone(), after], 2) // [1, H_kv, capacity, D]
        };
        self.keys = Some(ops::concatenate(&[batch_keys, row(keys)?], 0)?);
        self.values = Some(ops::concatenate(&[batch_values, row(values)?], 0)?);
        self.left_padding.push(padding);
        self.update_positions();
        Ok(())
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
        if index >= self.len() {
            return Err(Exception::custom(format!(
                "cannot remove row {index} of a batch of {}",
                self.len()
            )));
        }
        self.left_padding.remove(index);
        if self.left_padding.is_empty() {
            *self = BatchKvCache::new();
            return Ok(());
        }
        let kept: Vec<i32> = (0..self.len() as i32 + 1)
            .filter(|&row| row != index as i32)
            .collect();
        let kept = Array::from_slice(&kept, &[kept.len() as i32]);
        let trim = self.left_padding.iter().copied().min().unwrap_or(0);
        let keep_rows = |stored: &Array| -> Result<Array> {
            Ok(stored.take_axis(&kept, 0)?.index((.., .., trim.., ..)))
        };
        self.keys = self.keys.as_ref().map(keep_rows).transpose()?;
        self.values = self.values.as_ref().map(keep_rows).transpose()?;
        self.left_padding.iter_mut().for_each(|pad| *pad -= trim);
        self.end -= trim;
        self.update_positions();
        Ok(())
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
        let (Some(stored_keys), Some(stored_values)) = (&self.keys, &self.values) else {
            return Err(Exception::custom(
                "the batch is empty: add sequences before running it",
            ));
        };
        let [batch, heads, length, head_dim] =
            shape4(keys, "the cache", "keys of shape [B, H_kv, L, D]")?;
        if batch as usize != self.len() {
            return Err(Exception::custom(format!(
                "the batch holds {} sequences, the new keys have {batch} rows",
                self.len()
            )));
        }
        let new_end = self.end + length;
        if new_end > self.capacity() {
            let extra = round_up(new_end) - self.capacity();
            let grow = |stored: &Array| -> Result<Array> {
                let zeros = ops::zeros_dtype(&[batch, heads, extra, head_dim], stored.dtype())?;
                ops::concatenate(&[stored.clone(), zeros], 2)
            };
            let (grown_keys, grown_values) = (grow(stored_keys)?, grow(stored_values)?);
            self.keys = Some(grown_keys);
            self.values = Some(grown_values);
        }
        let (stored_keys, stored_values) = (
            self.keys.as_mut().expect("checked above"),
            self.values.as_mut().expect("checked above"),
        );
        stored_keys.try_index_mut((.., .., self.end..new_end, ..), keys)?;
        stored_values.try_index_mut((.., .., self.end..new_end, ..), values)?;
        let fetched = (
            stored_keys.index((.., .., ..new_end, ..)), // [B, H_kv, end, D]
            stored_values.index((.., .., ..new_end, ..)),
        );
        self.end = new_end;
        self.update_positions();
        Ok(fetched)
    }

    /// `[B, 1, L, S]`: `0` where row `b`'s query `i` may see column `j` (`j` is not padding,
    /// `left_padding[b] <= j`, and not in its future, `j <= S - L + i`), `-inf` elsewhere.
    ///
    /// Book: week 2, chapter 10 (continuous batching), task 2.
    fn mask(&self, queries: i32) -> Result<Option<Array>> {
        let (batch, keys) = (self.len() as i32, self.end);
        let columns = Array::arange::<_, i32>(0, keys, None)?.reshape(&[1, 1, 1, keys])?; // [1, 1, 1, S]
        let query_positions =
            Array::arange::<_, i32>(keys - queries, keys, None)?.reshape(&[1, 1, queries, 1])?; // [1, 1, L, 1]
        let padding = Array::from_slice(&self.left_padding, &[batch, 1, 1, 1]); // [B, 1, 1, 1]
        let visible = columns
            .ge(&padding)?
            .logical_and(&columns.le(&query_positions)?)?; // [B, 1, L, S]
        let hidden = Array::from_f32(f32::NEG_INFINITY);
        Ok(Some(ops::select(&visible, Array::from_f32(0.0), &hidden)?))
    }
}
