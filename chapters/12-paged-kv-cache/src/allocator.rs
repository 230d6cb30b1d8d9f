//! Handing blocks out and taking them back: the pool's allocator (its type, [`PagePool`], is in
//! `src/page_pool.rs`) and a request's block table growing and shrinking with it (its type,
//! [`BlockTable`], is in `src/block_table.rs`).

use crate::{blocks_for, BlockId, BlockTable, PagePool, PoolError};

impl PagePool {
    /// Takes `count` free blocks for a request.
    ///
    /// - Returns `count` distinct blocks, each now in use.
    /// - All or nothing: with fewer than `count` free, fails with [`PoolError::Exhausted`]
    ///   and takes none.
    ///
    /// Book: week 3, chapter 12 (paged KV cache), task 1.
    pub fn allocate(&mut self, count: usize) -> Result<Vec<BlockId>, PoolError> {
        todo!("chapter 12, task 1: take count blocks off the free list, all or nothing")
    }

    /// Gives `blocks` back to the pool, for any later request to reuse.
    ///
    /// - Fails with [`PoolError::NotInUse`] when a block is not in use (outside the pool, freed
    ///   already, or named twice in `blocks`), and then frees none.
    ///
    /// Book: week 3, chapter 12 (paged KV cache), task 1.
    pub fn free(&mut self, blocks: &[BlockId]) -> Result<(), PoolError> {
        todo!(
            "chapter 12, task 1: check every block is in use, then put them back on the free list"
        )
    }
}

impl BlockTable {
    /// Makes room for `new_tokens` more tokens after [`len`](BlockTable::len): allocates the
    /// blocks the table lacks, so that `capacity() >= len() + new_tokens`. `len` does not move
    /// (the forward pass that writes them calls [`advance`](BlockTable::advance)).
    ///
    /// - All or nothing: when the pool cannot give every missing block, fails with
    ///   [`PoolError::Exhausted`] and the table and the pool stay as they were.
    ///
    /// Book: week 3, chapter 12 (paged KV cache), task 1.
    pub fn reserve(&mut self, pool: &mut PagePool, new_tokens: usize) -> Result<(), PoolError> {
        todo!("chapter 12, task 1: allocate the blocks that len() + new_tokens needs beyond those the table has")
    }

    /// Keeps the first `length` tokens and gives the blocks past them back to the pool: rewinds
    /// a sequence (speculative decoding, a preempted request, a prompt that diverges).
    ///
    /// - Fails with [`PoolError::BadLength`] when `length > len()`, changing nothing.
    ///
    /// Book: week 3, chapter 12 (paged KV cache), task 1.
    pub fn truncate(&mut self, pool: &mut PagePool, length: usize) -> Result<(), PoolError> {
        todo!("chapter 12, task 1: free the blocks past length, then set the length")
    }
}
