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
        if count > self.free.len() {
            return Err(PoolError::Exhausted {
                requested: count,
                free: self.free.len(),
                total: self.num_blocks(),
            });
        }
        let blocks = self.free.split_off(self.free.len() - count);
        for &block in &blocks {
            self.in_use[block as usize] = true;
        }
        Ok(blocks)
    }

    /// Gives `blocks` back to the pool, for any later request to reuse.
    ///
    /// - Fails with [`PoolError::NotInUse`] when a block is not in use (outside the pool, freed
    ///   already, or named twice in `blocks`), and then frees none.
    ///
    /// Book: week 3, chapter 12 (paged KV cache), task 1.
    pub fn free(&mut self, blocks: &[BlockId]) -> Result<(), PoolError> {
        // Check everything before changing anything; marking as we go catches duplicates.
        let mut checked = 0;
        let mut problem = None;
        for &block in blocks {
            match self.in_use.get_mut(block as usize) {
                Some(in_use) if *in_use => {
                    *in_use = false;
                    checked += 1;
                }
                _ => {
                    problem = Some(block);
                    break;
                }
            }
        }
        if let Some(block) = problem {
            for &undo in &blocks[..checked] {
                self.in_use[undo as usize] = true;
            }
            return Err(PoolError::NotInUse {
                block,
                total: self.num_blocks(),
            });
        }
        self.free.extend_from_slice(blocks);
        Ok(())
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
        let needed = blocks_for(self.length + new_tokens).saturating_sub(self.blocks.len());
        let blocks = pool.allocate(needed)?;
        self.blocks.extend(blocks);
        Ok(())
    }

    /// Keeps the first `length` tokens and gives the blocks past them back to the pool: rewinds
    /// a sequence (speculative decoding, a preempted request, a prompt that diverges).
    ///
    /// - Fails with [`PoolError::BadLength`] when `length > len()`, changing nothing.
    ///
    /// Book: week 3, chapter 12 (paged KV cache), task 1.
    pub fn truncate(&mut self, pool: &mut PagePool, length: usize) -> Result<(), PoolError> {
        if length > self.length {
            return Err(PoolError::BadLength {
                length: self.length,
                requested: length,
            });
        }
        let keep = blocks_for(length);
        pool.free(&self.blocks[keep..])?;
        self.blocks.truncate(keep);
        self.length = length;
        Ok(())
    }
}
