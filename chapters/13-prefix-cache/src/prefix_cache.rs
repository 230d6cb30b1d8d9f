//! Sharing blocks by their content: hashing a block with its prefix, finding a prompt's cached
//! blocks, registering full blocks, counting references, and evicting the least recently used
//! block when the pool runs out. The cache's type, [`PrefixCache`], is in
//! `src/prefix_cache_storage.rs`.

use crate::{BlockHash, PrefixCache};
use paged_kv_cache::{blocks_for, BlockId, BlockTable, PoolError, BLOCK_SIZE};
use std::{
    collections::hash_map::Entry,
    hash::{DefaultHasher, Hash, Hasher},
};

const BLOCK: usize = BLOCK_SIZE as usize;

/// The hash of a full block of `tokens` whose prefix hashes to `parent` (`None` for a sequence's
/// first block).
///
/// - Equal for the same parent and tokens; different (but for a collision, about 1 in 2^64)
///   when either differs, so that the same tokens after another prefix are another block.
/// - Stable within one process (std's `DefaultHasher::new()`).
///
/// Book: week 3, chapter 13 (prefix cache), task 1.
pub fn block_hash(parent: Option<BlockHash>, tokens: &[u32]) -> BlockHash {
    todo!("chapter 13, task 1: hash the parent, then the tokens, with DefaultHasher::new()")
}

impl PrefixCache {
    /// A block table for `tokens` that starts with every cached block of their prefix.
    ///
    /// - Walks the full blocks of `tokens` in order, hashing each with its prefix, and stops at
    ///   the first hash not registered. Each block found gains a reference (and is no longer
    ///   evictable).
    /// - The table's length is the tokens those blocks hold, but at most `tokens.len() - 1`: the
    ///   last token must still run, since its logits are the answer.
    ///
    /// Book: week 3, chapter 13 (prefix cache), task 1.
    pub fn lookup(&mut self, tokens: &[u32]) -> BlockTable {
        todo!("chapter 13, task 1: follow the hashes of the full blocks while they are registered, take a reference to each, cap the length at tokens.len() - 1")
    }

    /// Registers the full blocks of `table` (which holds the first `table.len()` of `tokens`), so
    /// that later lookups find them.
    ///
    /// - A block already registered stays as it is. A hash that another block holds already
    ///   (two requests computed the same prefix at once) is not registered again: that block
    ///   stays private and is freed with its table.
    ///
    /// Book: week 3, chapter 13 (prefix cache), task 1.
    pub fn commit(&mut self, table: &BlockTable, tokens: &[u32]) {
        todo!("chapter 13, task 1: register the hash of each full block of the table that has none, unless another block holds it")
    }

    /// Drops one reference to `block`. With none left, a registered block becomes evictable
    /// (most recently used), any other goes back to the pool.
    ///
    /// - Fails with [`PoolError::NotInUse`] when no table holds `block`.
    ///
    /// Book: week 3, chapter 13 (prefix cache), task 2.
    pub fn drop_ref(&mut self, block: BlockId) -> Result<(), PoolError> {
        todo!("chapter 13, task 2: one reference less; at zero, evictable if registered, else back to the pool")
    }

    /// A request is done with `table`: drops one reference to each of its blocks.
    ///
    /// Book: week 3, chapter 13 (prefix cache), task 2.
    pub fn release(&mut self, table: BlockTable) -> Result<(), PoolError> {
        todo!("chapter 13, task 2: drop a reference to each of the table's blocks")
    }

    /// Evicts registered blocks no table holds, least recently used first, until the pool has
    /// `count` free blocks: each loses its hash and goes back to the pool.
    ///
    /// - Fails with [`PoolError::Exhausted`] (`free` counting the evictable blocks too) and
    ///   evicts nothing when even evicting every such block would not be enough.
    ///
    /// Book: week 3, chapter 13 (prefix cache), task 2.
    pub fn make_free(&mut self, count: usize) -> Result<(), PoolError> {
        todo!("chapter 13, task 2: evict the least recently used unreferenced blocks until count are free")
    }

    /// [`BlockTable::reserve`] that evicts when it must: makes room for `new_tokens` more tokens
    /// in `table`, each new block with one reference.
    ///
    /// - All or nothing, like chapter 12's.
    ///
    /// Book: week 3, chapter 13 (prefix cache), task 2.
    pub fn reserve(&mut self, table: &mut BlockTable, new_tokens: usize) -> Result<(), PoolError> {
        todo!("chapter 13, task 2: make_free the blocks the table lacks, reserve them, one reference each")
    }
}
