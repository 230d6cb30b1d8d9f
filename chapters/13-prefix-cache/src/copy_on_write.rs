//! Copy-on-write: a request about to write into a block it shares, or whose content is
//! registered, first gets a copy of its own. The cache's type, [`PrefixCache`], is in
//! `src/prefix_cache_storage.rs`.

use crate::PrefixCache;
use paged_kv_cache::{BlockTable, PagedError, BLOCK_SIZE};

impl PrefixCache {
    /// Makes the block that `table`'s next token goes to safe to write.
    ///
    /// - That block is `table.blocks()[len / BLOCK_SIZE]`; when the table has no such block
    ///   yet, or holds it alone and it is not registered, there is nothing to do.
    /// - Otherwise: take a free block (evicting if needed), copy the old block's keys and values
    ///   into it in every layer ([`PagePool::copy_block`](paged_kv_cache::PagePool::copy_block)),
    ///   put it in the table, and drop the table's reference to the old one.
    ///
    /// Book: week 3, chapter 13 (prefix cache), task 3.
    pub fn make_writable(&mut self, table: &mut BlockTable) -> Result<(), PagedError> {
        todo!("chapter 13, task 3: if the block the next token goes to is shared or registered, swap in a copy of it")
    }
}
