//! The pool of KV pages every request shares: the [`PagePool`] type, its blocks, its errors, and
//! what it tells about itself. Given: your code in `src/allocator.rs` hands blocks out and takes
//! them back, and `src/paged_attention.rs` writes and reads the pages.
//!
//! A block is [`BLOCK_SIZE`] consecutive token positions of one sequence, in every layer. Its
//! keys and values live in each layer's pages at the slots `block * BLOCK_SIZE ..
//! (block + 1) * BLOCK_SIZE`:
//!
//! ```text
//! layer pages, [num_blocks * BLOCK_SIZE, H_kv, D]:
//!   slot 0..16   block 0    (request A, tokens 16..32)
//!   slot 16..32  block 1    (free)
//!   slot 32..48  block 2    (request A, tokens 0..16)
//!   slot 48..64  block 3    (request B, tokens 0..5, then room for 11 more)
//! ```

use mlx_rs::{
    ops::indexing::{IndexOp, TryIndexMutOp},
    Array,
};

/// Token positions per block. Small blocks waste less of a request's last block; large ones make
/// block tables shorter. vLLM uses 16.
pub const BLOCK_SIZE: i32 = 16;

/// A block's index in the pool, `0..num_blocks`.
pub type BlockId = u32;

/// What the pool refuses. Every operation that fails leaves the pool and the block tables as
/// they were.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PoolError {
    #[error("the KV page pool is full: {requested} blocks requested, {free} of {total} free; finish or preempt a request, or give the pool more blocks (--kv-blocks)")]
    Exhausted {
        requested: usize,
        free: usize,
        total: usize,
    },
    #[error("block {block} is not in use (freed twice, or never allocated from this pool of {total} blocks)")]
    NotInUse { block: BlockId, total: usize },
    #[error("cannot truncate a block table of {length} tokens to {requested}")]
    BadLength { length: usize, requested: usize },
}

/// One layer's keys and values for every slot of the pool.
///
/// Given; writing and reading them is yours (book: week 3, chapter 12 (paged KV cache), task 3).
pub struct LayerPages {
    /// `[num_slots, H_kv, D]`; `None` before the first write, which fixes `H_kv`, `D` and the
    /// dtype.
    pub(crate) keys: Option<Array>,
    pub(crate) values: Option<Array>,
    /// `num_blocks * BLOCK_SIZE`.
    pub(crate) num_slots: i32,
}

impl LayerPages {
    /// The pages of a pool of `num_blocks` blocks.
    pub fn new(num_blocks: usize) -> Self {
        LayerPages {
            keys: None,
            values: None,
            num_slots: num_blocks as i32 * BLOCK_SIZE,
        }
    }

    /// The bytes the keys and values of every slot take (0 before the first write).
    pub fn nbytes(&self) -> usize {
        [&self.keys, &self.values]
            .into_iter()
            .flatten()
            .map(Array::nbytes)
            .sum()
    }
}

/// Fixed-size blocks of KV storage, in every layer, handed to requests as they grow.
///
/// Given; allocating and freeing are yours (book: week 3, chapter 12 (paged KV cache), task 1).
pub struct PagePool {
    pub(crate) layers: Vec<LayerPages>,
    /// The blocks no request holds; `allocate` may take them in any order.
    pub(crate) free: Vec<BlockId>,
    /// `in_use[block]`: whether a request holds `block`.
    pub(crate) in_use: Vec<bool>,
}

impl PagePool {
    /// A pool of `num_blocks` blocks for a model of `num_layers` layers. The pages take memory
    /// at their first write.
    pub fn new(num_layers: usize, num_blocks: usize) -> Self {
        PagePool {
            layers: (0..num_layers)
                .map(|_| LayerPages::new(num_blocks))
                .collect(),
            // Reversed so that a fresh pool hands out 0, 1, 2... (allocate pops from the end).
            free: (0..num_blocks as BlockId).rev().collect(),
            in_use: vec![false; num_blocks],
        }
    }

    pub fn num_blocks(&self) -> usize {
        self.in_use.len()
    }

    pub fn num_free(&self) -> usize {
        self.free.len()
    }

    pub fn num_used(&self) -> usize {
        self.num_blocks() - self.num_free()
    }

    /// Each layer's pages, for the model's forward pass.
    pub fn layers_mut(&mut self) -> &mut [LayerPages] {
        &mut self.layers
    }

    /// Copies block `from`'s keys and values to block `to`, in every layer: chapter 13's
    /// copy-on-write.
    pub fn copy_block(&mut self, from: BlockId, to: BlockId) -> mlx_rs::error::Result<()> {
        let slots = |block: BlockId| {
            let start = block as i32 * BLOCK_SIZE;
            start..start + BLOCK_SIZE
        };
        for layer in &mut self.layers {
            for pages in [&mut layer.keys, &mut layer.values].into_iter().flatten() {
                let copy = pages.index(slots(from)); // [BLOCK_SIZE, H_kv, D]
                pages.try_index_mut(slots(to), &copy)?;
            }
        }
        Ok(())
    }

    /// The bytes every layer's pages take.
    pub fn nbytes(&self) -> usize {
        self.layers.iter().map(LayerPages::nbytes).sum()
    }

    /// The bytes one block takes across `num_layers` layers of `kv_heads` heads of `head_dim`
    /// values of `dtype_bytes` bytes, keys and values: how to size a pool for a memory budget.
    pub fn bytes_per_block(
        num_layers: usize,
        kv_heads: usize,
        head_dim: usize,
        dtype_bytes: usize,
    ) -> usize {
        2 * num_layers * BLOCK_SIZE as usize * kv_heads * head_dim * dtype_bytes
    }
}

/// The number of blocks that hold `tokens` positions.
pub fn blocks_for(tokens: usize) -> usize {
    tokens.div_ceil(BLOCK_SIZE as usize)
}

/// What a forward pass over pages can fail with: the pool, or MLX.
#[derive(Debug, thiserror::Error)]
pub enum PagedError {
    #[error(transparent)]
    Pool(#[from] PoolError),
    #[error("MLX: {0}")]
    Mlx(#[from] mlx_rs::error::Exception),
}
