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
        todo!("chapter 8, task 1: grow the storage by whole STEPs, write the new keys and values at offset")
    }

    /// Forgets every position from `length` on, keeping the storage: the next update writes at
    /// `length`. Used to rewind (speculative decoding, context policies, reusing a prompt).
    ///
    /// - Fails when `length` is negative or more than `offset`.
    ///
    /// Book: week 2, chapter 8 (the KV cache), task 2.
    pub fn truncate(&mut self, length: i32) -> Result<()> {
        todo!("chapter 8, task 2: move offset back to length (0 <= length <= offset)")
    }

    /// The bytes the cache's storage takes: keys and values at full capacity,
    /// `2 x B x H_kv x capacity x D x dtype size`.
    ///
    /// Book: week 2, chapter 8 (the KV cache), task 2.
    pub fn nbytes(&self) -> usize {
        todo!("chapter 8, task 2: the bytes of the stored keys and values")
    }
}
