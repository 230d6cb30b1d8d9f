//! What the tests of every task share: seeded layouts of the pool, and small helpers.

use mlx_rs::{Array, Dtype};
use paged_kv_cache::{BlockId, BlockTable, PagePool};
use std::{collections::BTreeSet, path::Path};
use test_support::{expect_ok as ok, Tolerance};

pub const SMOLLM2: &str = "smollm2-135m-instruct";

/// Copies are exact: the pages must give back the very values they were given.
pub const EXACT: Tolerance = Tolerance {
    rtol: 0.0,
    atol: 0.0,
};

/// Tiny-model logits, as in chapters 5 and 8: three float32 layers summed in another order than
/// PyTorch's differ by up to ~6e-5 on logits of magnitude up to ~20.
pub const TINY_LOGITS: Tolerance = Tolerance {
    rtol: 1e-5,
    atol: 1e-4,
};

/// A small seeded generator (xorshift64*), so that layouts differ from test to test but never
/// from run to run.
pub struct Seeded(u64);

impl Seeded {
    pub fn new(seed: u64) -> Self {
        Seeded(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    pub fn below(&mut self, bound: usize) -> usize {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 33) as usize % bound
    }

    pub fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            items.swap(i, self.below(i + 1));
        }
    }
}

/// A pool of `2 * free` blocks in which a seeded random half is held by some other request:
/// whatever order `allocate` takes blocks in, a sequence's blocks are scattered over the pages.
pub fn pool_with_holes(layers: usize, free: usize, seed: u64) -> PagePool {
    let mut pool = PagePool::new(layers, 2 * free);
    let mut blocks = ok(pool.allocate(2 * free), "PagePool::allocate");
    Seeded::new(seed).shuffle(&mut blocks);
    ok(pool.free(&blocks[..free]), "PagePool::free");
    pool
}

/// Reserves `count` tokens in `table` and counts them in, as a forward pass would.
pub fn grow(table: &mut BlockTable, pool: &mut PagePool, count: usize) {
    ok(table.reserve(pool, count), "BlockTable::reserve");
    table.advance(count);
}

pub fn distinct(blocks: &[BlockId]) -> BTreeSet<BlockId> {
    blocks.iter().copied().collect()
}

pub fn load_model(dir: &Path) -> paged_kv_cache::Model {
    paged_kv_cache::Model::load(dir)
        .unwrap_or_else(|error| panic!("Model::load({}): {error}", dir.display()))
}

/// The values of an int32 array.
pub fn int_values(array: &Array) -> Vec<i32> {
    let array = ok(array.as_dtype(Dtype::Int32), "as_dtype");
    ok(array.eval(), "the array evaluates");
    array.as_slice::<i32>().to_vec()
}
