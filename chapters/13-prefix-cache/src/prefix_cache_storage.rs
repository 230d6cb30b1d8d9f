//! The pool of chapter 12, with blocks shared across requests by their content: the
//! [`PrefixCache`] type, what it counts, and what it tells about itself. Given: your code in
//! `src/prefix_cache.rs` finds, shares, registers and frees blocks, and `src/copy_on_write.rs`
//! gives a request its own copy of a shared block.
//!
//! A full block is known by the hash of its tokens and of every token before it (its prefix):
//! two requests whose prompts start with the same 32 tokens have the same first two block hashes,
//! so the second can read the first's blocks instead of computing them again.
//!
//! ```text
//! request A: [system prompt 16][system prompt 16][question A 7]   blocks 4, 9, 2
//! request B: [system prompt 16][system prompt 16][question B 11]  blocks 4, 9, 6
//!            hash h1            hash h2 = H(h1, ...)               refs: 4 -> 2, 9 -> 2
//! ```
//!
//! A block's life: allocated (one reference) -> full, its hash registered (others may share it,
//! each adding a reference) -> released by every request (no reference: kept, evictable, least
//! recently used first) -> reused by a hit, or evicted when a request needs a free block.

use lru::LruCache;
use paged_kv_cache::{BlockId, PagePool};
use std::collections::HashMap;

/// A full block's identity: its tokens and every token before it.
pub type BlockHash = u64;

/// What the prefix cache has saved, since it was made.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PrefixStats {
    /// Prompt tokens found in cached blocks (not computed again).
    pub hit_tokens: usize,
    /// Prompt tokens that had to be computed.
    pub miss_tokens: usize,
    /// Cached blocks given to new content because the pool ran out of free ones.
    pub evictions: usize,
}

/// A [`PagePool`] whose full blocks are shared by hash, counted by reference, and kept after
/// their last request leaves until the memory is needed.
///
/// Given; sharing, registering, freeing and copying are yours (book: week 3, chapter 13 (prefix
/// cache), tasks 1-3).
pub struct PrefixCache {
    pub(crate) pool: PagePool,
    /// `refs[block]`: how many block tables hold `block`.
    pub(crate) refs: Vec<u32>,
    /// `hashes[block]`: the hash of the full block's content, once registered.
    pub(crate) hashes: Vec<Option<BlockHash>>,
    /// The block that holds each registered hash.
    pub(crate) by_hash: HashMap<BlockHash, BlockId>,
    /// Registered blocks no table holds, least recently released first: what may be evicted.
    pub(crate) evictable: LruCache<BlockId, ()>,
    pub(crate) stats: PrefixStats,
}

impl PrefixCache {
    /// A prefix cache over a new pool of `num_blocks` blocks for `num_layers` layers.
    pub fn new(num_layers: usize, num_blocks: usize) -> Self {
        PrefixCache {
            pool: PagePool::new(num_layers, num_blocks),
            refs: vec![0; num_blocks],
            hashes: vec![None; num_blocks],
            by_hash: HashMap::new(),
            evictable: LruCache::unbounded(),
            stats: PrefixStats::default(),
        }
    }

    pub fn pool(&self) -> &PagePool {
        &self.pool
    }

    /// The pool, for a forward pass over tables this cache reserved.
    pub fn pool_mut(&mut self) -> &mut PagePool {
        &mut self.pool
    }

    /// Blocks a request could get now: free ones, and cached ones no table holds.
    pub fn available(&self) -> usize {
        self.pool.num_free() + self.evictable.len()
    }

    /// Blocks kept for their content that no table holds.
    pub fn num_evictable(&self) -> usize {
        self.evictable.len()
    }

    /// How many tables hold `block`.
    pub fn refs(&self, block: BlockId) -> u32 {
        self.refs[block as usize]
    }

    /// Whether `block`'s content is registered for sharing.
    pub fn is_registered(&self, block: BlockId) -> bool {
        self.hashes[block as usize].is_some()
    }

    pub fn stats(&self) -> PrefixStats {
        self.stats
    }

    /// Counts a request's prompt: `cached` of its `prompt` tokens were found in the cache.
    pub fn record_lookup(&mut self, prompt: usize, cached: usize) {
        self.stats.hit_tokens += cached;
        self.stats.miss_tokens += prompt - cached;
    }
}
