//! Where the KV cache keeps its keys and values: the [`KvCache`] type, how much it grows at a
//! time, what it tells about itself, and how attention uses it as a [`LayerCache`]. Given: your
//! code in `src/cache.rs` fills and rewinds it.

use crate::LayerCache;
use mlx_rs::{error::Result, ops::indexing::IndexOp, Array};
use rope::Offset;

/// The cache grows by this many positions at a time: one allocation per `STEP` tokens, not a
/// concatenation (a full copy) per token.
pub const STEP: i32 = 256;

/// The keys and values of one attention layer, for positions `0..offset`.
///
/// Given; its updates are yours (book: week 2, chapter 8 (the KV cache), tasks 1 and 2).
#[derive(Default)]
pub struct KvCache {
    /// `[B, H_kv, capacity, D]`, filled up to `offset`; `None` before the first update.
    pub(crate) keys: Option<Array>,
    pub(crate) values: Option<Array>,
    pub(crate) offset: i32,
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
    pub fn contents(&self) -> Option<(Array, Array)> {
        let (keys, values) = (self.keys.as_ref()?, self.values.as_ref()?);
        let end = self.offset;
        Some((
            keys.index((.., .., ..end, ..)),
            values.index((.., .., ..end, ..)),
        ))
    }
}

/// One sequence (or a batch of them all at the same position).
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
