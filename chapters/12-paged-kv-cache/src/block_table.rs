//! A request's block table: which blocks of the pool hold its tokens, in order. Given: your code
//! in `src/allocator.rs` grows and shrinks it.
//!
//! ```text
//! blocks: [2, 0, 3]    length: 37
//! token 0..16  -> block 2, token 16..32 -> block 0, token 32..37 -> block 3 (11 slots to spare)
//! ```

use crate::{BlockId, PagePool, PoolError, BLOCK_SIZE};

/// The blocks of one sequence and how many of its tokens are in them.
///
/// Given; growing and shrinking it is yours (book: week 3, chapter 12 (paged KV cache), task 1).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct BlockTable {
    /// `blocks[i]` holds the tokens `i * BLOCK_SIZE .. (i + 1) * BLOCK_SIZE`.
    pub(crate) blocks: Vec<BlockId>,
    /// How many tokens the blocks hold: the position of the next one.
    pub(crate) length: usize,
}

impl BlockTable {
    pub fn new() -> Self {
        BlockTable::default()
    }

    /// A table of `length` tokens in `blocks`: chapter 13 makes one from blocks it found cached.
    ///
    /// # Panics
    /// When the blocks cannot hold `length` tokens.
    pub fn with_blocks(blocks: Vec<BlockId>, length: usize) -> Self {
        assert!(
            length <= blocks.len() * BLOCK_SIZE as usize,
            "{length} tokens do not fit {} blocks",
            blocks.len()
        );
        BlockTable { blocks, length }
    }

    pub fn blocks(&self) -> &[BlockId] {
        &self.blocks
    }

    /// How many tokens the table's blocks hold.
    pub fn len(&self) -> usize {
        self.length
    }

    pub fn is_empty(&self) -> bool {
        self.length == 0
    }

    /// How many tokens fit in the blocks it has.
    pub fn capacity(&self) -> usize {
        self.blocks.len() * BLOCK_SIZE as usize
    }

    /// The slot (row of the layer pages) of token `position`; `None` beyond the capacity.
    pub fn slot(&self, position: usize) -> Option<i32> {
        let block = *self.blocks.get(position / BLOCK_SIZE as usize)?;
        Some(block as i32 * BLOCK_SIZE + (position % BLOCK_SIZE as usize) as i32)
    }

    /// Puts `block` in place of the table's block `index` and returns the one it replaces:
    /// chapter 13's copy-on-write gives a sequence its own copy of a shared block this way.
    ///
    /// # Panics
    /// When the table has no block `index`.
    pub fn replace_block(&mut self, index: usize, block: BlockId) -> BlockId {
        std::mem::replace(&mut self.blocks[index], block)
    }

    /// Gives every block back to the pool: the request is done.
    pub fn release(&mut self, pool: &mut PagePool) -> Result<(), PoolError> {
        self.truncate(pool, 0)
    }

    /// Records that `count` more tokens were written (after a forward pass that succeeded).
    ///
    /// # Panics
    /// When the blocks cannot hold them: reserve first.
    pub fn advance(&mut self, count: usize) {
        assert!(
            self.length + count <= self.capacity(),
            "advance past the reserved blocks"
        );
        self.length += count;
    }
}
