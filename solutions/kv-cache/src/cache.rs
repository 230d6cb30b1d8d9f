//! Filling and rewinding the key/value cache of one attention layer (its storage, [`KvCache`], is
//! in `src/cache_storage.rs`): the keys and values of every token seen so far, so that each new
//! token attends over them without recomputing them.

use crate::{KvCache, STEP};
use mlx_rs::{
    error::{Exception, Result},
    ops,
    ops::indexing::{IndexOp, TryIndexMutOp},
    Array,
};
use rope::shape4;

impl KvCache {
    /// Appends the new tokens' keys and values and returns those of every position so far.
    ///
    /// - `keys`, `values`: `[B, H_kv, L, D]`, the new tokens (after RoPE).
    /// - Returns `(keys, values)`, each `[B, H_kv, offset + L, D]`; `offset` grows by `L`.
    /// - Storage grows in multiples of [`STEP`] positions, copying the old contents once per
    ///   growth; between growths, new tokens are written in place.
    /// - Fails when `B`, `H_kv` or `D` differ from the earlier updates.
    ///
    /// Book: week 2, chapter 8 (the KV cache), task 1.
    pub fn update_and_fetch(&mut self, keys: &Array, values: &Array) -> Result<(Array, Array)> {
        let [batch, heads, length, head_dim] =
            shape4(keys, "the cache", "keys of shape [B, H_kv, L, D]")?;
        let end = self.offset + length;
        if let Some(stored) = &self.keys {
            let shape = stored.shape();
            if [shape[0], shape[1], shape[3]] != [batch, heads, head_dim] {
                return Err(Exception::custom(format!(
                    "the cache holds [B, H_kv, _, D] = {shape:?}, the new keys are {:?}",
                    keys.shape()
                )));
            }
        }
        if end > self.capacity() {
            // Round up to whole steps, so that the next tokens are written in place.
            let capacity = (end + STEP - 1) / STEP * STEP;
            let grow = |stored: Option<&Array>, new: &Array| -> Result<Array> {
                let free = ops::zeros_dtype(
                    &[batch, heads, capacity - self.offset, head_dim],
                    new.dtype(),
                )?;
                match stored {
                    None => Ok(free),
                    Some(stored) => {
                        let kept = stored.index((.., .., ..self.offset, ..));
                        ops::concatenate(&[kept, free], 2)
                    }
                }
            };
            self.keys = Some(grow(self.keys.as_ref(), keys)?);
            self.values = Some(grow(self.values.as_ref(), values)?);
        }
        let (stored_keys, stored_values) = (
            self.keys.as_mut().expect("grown above"),
            self.values.as_mut().expect("grown above"),
        );
        stored_keys.try_index_mut((.., .., self.offset..end, ..), keys)?;
        stored_values.try_index_mut((.., .., self.offset..end, ..), values)?;
        self.offset = end;
        Ok((
            stored_keys.index((.., .., ..end, ..)), // [B, H_kv, offset + L, D]
            stored_values.index((.., .., ..end, ..)),
        ))
    }

    /// Forgets every position from `length` on, keeping the storage: the next update writes at
    /// `length`. Used to rewind (speculative decoding, context policies, reusing a prompt).
    ///
    /// - Fails when `length` is negative or more than `offset`.
    ///
    /// Book: week 2, chapter 8 (the KV cache), task 2.
    pub fn truncate(&mut self, length: i32) -> Result<()> {
        if length < 0 || length > self.offset {
            return Err(Exception::custom(format!(
                "cannot truncate a cache of {} positions to {length}",
                self.offset
            )));
        }
        self.offset = length;
        Ok(())
    }

    /// The bytes the cache's storage takes: keys and values at full capacity,
    /// `2 x B x H_kv x capacity x D x dtype size`.
    ///
    /// Book: week 2, chapter 8 (the KV cache), task 2.
    pub fn nbytes(&self) -> usize {
        [&self.keys, &self.values]
            .into_iter()
            .flatten()
            .map(Array::nbytes)
            .sum()
    }
}
