//! The key/value cache of one attention layer: the keys and values of every token seen so far,
//! so that each new token attends over them without recomputing them.

use crate::LayerCache;
use mlx_rs::{
    error::{Exception, Result},
    ops,
    ops::indexing::{IndexOp, TryIndexMutOp},
    Array,
};
use rope::Offset;

/// The cache grows by this many positions at a time: one allocation per `STEP` tokens, not a
/// concatenation (a full copy) per token.
pub const STEP: i32 = 256;

/// The keys and values of one attention layer, for positions `0..offset`.
///
/// Book: week 2, chapter 8 (the KV cache), tasks 1 and 2.
#[derive(Default)]
pub struct KvCache {
    /// `[B, H_kv, capacity, D]`, filled up to `offset`; `None` before the first update.
    keys: Option<Array>,
    values: Option<Array>,
    offset: i32,
}

impl KvCache {
    pub fn new() -> Self {
        KvCache::default()
    }

    /// How many positions the cache holds: the position of the next token.
    pub fn offset(&self) -> i32 {
        self.offset
    }

    /// How many positions fit before the storage must grow.
    pub fn capacity(&self) -> i32 {
        self.keys.as_ref().map_or(0, |keys| keys.shape()[2])
    }

    /// The keys and values of positions `0..offset`, each `[B, H_kv, offset, D]`; `None` when
    /// empty. Chapter 10 moves a prefilled sequence into a batch with it.
    ///
    /// Given.
    pub fn contents(&self) -> Option<(Array, Array)> {
        let (keys, values) = (self.keys.as_ref()?, self.values.as_ref()?);
        let end = self.offset;
        Some((
            keys.index((.., .., ..end, ..)),
            values.index((.., .., ..end, ..)),
        ))
    }

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
        let &[batch, heads, length, head_dim] = keys.shape() else {
            return Err(Exception::custom(format!(
                "the cache expects keys of shape [B, H_kv, L, D], got {:?}",
                keys.shape()
            )));
        };
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

/// Given: one sequence (or a batch of them all at the same position).
impl LayerCache for KvCache {
    fn positions(&self) -> Offset<'_> {
        Offset::Start(self.offset)
    }

    fn update_and_fetch(&mut self, keys: &Array, values: &Array) -> Result<(Array, Array)> {
        KvCache::update_and_fetch(self, keys, values)
    }

    fn mask(&self, _queries: i32) -> Result<Option<Array>> {
        Ok(None)
    }
}
