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
        let index = table.len() / BLOCK_SIZE as usize;
        let Some(&shared) = table.blocks().get(index) else {
            return Ok(());
        };
        if self.refs(shared) == 1 && !self.is_registered(shared) {
            return Ok(());
        }
        self.make_free(1)?;
        let own = self.pool.allocate(1)?[0];
        self.pool.copy_block(shared, own)?;
        self.refs[own as usize] = 1;
        table.replace_block(index, own);
        self.drop_ref(shared)?;
        Ok(())
    }
}
