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
    let mut hasher = DefaultHasher::new();
    parent.hash(&mut hasher);
    tokens.hash(&mut hasher);
    hasher.finish()
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
        let mut blocks = Vec::new();
        let mut parent = None;
        for chunk in tokens.chunks_exact(BLOCK) {
            let hash = block_hash(parent, chunk);
            let Some(&block) = self.by_hash.get(&hash) else {
                break;
            };
            blocks.push(block);
            parent = Some(hash);
        }
        for &block in &blocks {
            if self.refs[block as usize] == 0 {
                self.evictable.pop(&block);
            }
            self.refs[block as usize] += 1;
        }
        let length = (blocks.len() * BLOCK).min(tokens.len().saturating_sub(1));
        BlockTable::with_blocks(blocks, length)
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
        let mut parent = None;
        for (chunk, &block) in tokens[..table.len()]
            .chunks_exact(BLOCK)
            .zip(table.blocks())
        {
            let hash = match self.hashes[block as usize] {
                Some(hash) => hash,
                None => {
                    let hash = block_hash(parent, chunk);
                    if let Entry::Vacant(entry) = self.by_hash.entry(hash) {
                        entry.insert(block);
                        self.hashes[block as usize] = Some(hash);
                    }
                    hash
                }
            };
            parent = Some(hash);
        }
    }

    /// Drops one reference to `block`. With none left, a registered block becomes evictable
    /// (most recently used), any other goes back to the pool.
    ///
    /// - Fails with [`PoolError::NotInUse`] when no table holds `block`.
    ///
    /// Book: week 3, chapter 13 (prefix cache), task 2.
    pub fn drop_ref(&mut self, block: BlockId) -> Result<(), PoolError> {
        let not_in_use = PoolError::NotInUse {
            block,
            total: self.pool.num_blocks(),
        };
        let refs = self
            .refs
            .get_mut(block as usize)
            .ok_or(not_in_use.clone())?;
        if *refs == 0 {
            return Err(not_in_use);
        }
        *refs -= 1;
        if *refs == 0 {
            if self.hashes[block as usize].is_some() {
                self.evictable.push(block, ());
            } else {
                self.pool.free(&[block])?;
            }
        }
        Ok(())
    }

    /// A request is done with `table`: drops one reference to each of its blocks.
    ///
    /// Book: week 3, chapter 13 (prefix cache), task 2.
    pub fn release(&mut self, table: BlockTable) -> Result<(), PoolError> {
        for &block in table.blocks() {
            self.drop_ref(block)?;
        }
        Ok(())
    }

    /// Evicts registered blocks no table holds, least recently used first, until the pool has
    /// `count` free blocks: each loses its hash and goes back to the pool.
    ///
    /// - Fails with [`PoolError::Exhausted`] (`free` counting the evictable blocks too) and
    ///   evicts nothing when even evicting every such block would not be enough.
    ///
    /// Book: week 3, chapter 13 (prefix cache), task 2.
    pub fn make_free(&mut self, count: usize) -> Result<(), PoolError> {
        if count > self.available() {
            return Err(PoolError::Exhausted {
                requested: count,
                free: self.available(),
                total: self.pool.num_blocks(),
            });
        }
        while self.pool.num_free() < count {
            let (block, ()) = self.evictable.pop_lru().expect("counted as available");
            if let Some(hash) = self.hashes[block as usize].take() {
                self.by_hash.remove(&hash);
            }
            self.pool.free(&[block])?;
            self.stats.evictions += 1;
        }
        Ok(())
    }

    /// [`BlockTable::reserve`] that evicts when it must: makes room for `new_tokens` more tokens
    /// in `table`, each new block with one reference.
    ///
    /// - All or nothing, like chapter 12's.
    ///
    /// Book: week 3, chapter 13 (prefix cache), task 2.
    pub fn reserve(&mut self, table: &mut BlockTable, new_tokens: usize) -> Result<(), PoolError> {
        let had = table.blocks().len();
        self.make_free(blocks_for(table.len() + new_tokens).saturating_sub(had))?;
        table.reserve(&mut self.pool, new_tokens)?;
        for &block in &table.blocks()[had..] {
            self.refs[block as usize] = 1;
        }
        Ok(())
    }
}
