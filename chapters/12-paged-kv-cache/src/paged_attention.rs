//! Writing new keys and values into one layer's pages and reading a batch's keys back from
//! wherever their blocks are: attention over non-contiguous pages, as MLX gather and scatter.
//! The pages' type, [`LayerPages`], is in `src/page_pool.rs`.

use crate::{LayerPages, StepPlan};
use mlx_rs::{
    error::{Exception, Result},
    ops,
    ops::indexing::TryIndexMutOp,
    Array,
};

impl LayerPages {
    /// Writes a step's new keys and values into their slots.
    ///
    /// - `keys`, `values`: `[B, H_kv, L, D]` (after RoPE); token `i` of row `b` goes to slot
    ///   `plan.write_slots()[b * L + i]`.
    /// - The first write makes the pages, `[num_slots, H_kv, D]` zeros of the keys' dtype, with
    ///   `num_slots` as the pool gave; later writes must have the same `H_kv` and `D`.
    ///
    /// Book: week 3, chapter 12 (paged KV cache), task 3.
    pub fn write(&mut self, keys: &Array, values: &Array, plan: &StepPlan) -> Result<()> {
        todo!("chapter 12, task 3: scatter the new keys and values into their slots (make the pages at the first write)")
    }

    /// Reads every key and value the plan's rows attend to, as one dense batch.
    ///
    /// - Returns `(keys, values)`, each `[B, H_kv, S, D]`: position `j` of row `b` is slot
    ///   `plan.read_slots()[b, j]`.
    /// - Fails before the first write.
    ///
    /// Book: week 3, chapter 12 (paged KV cache), task 3.
    pub fn gather(&self, plan: &StepPlan) -> Result<(Array, Array)> {
        todo!("chapter 12, task 3: take the read slots from the pages, then put the heads before the positions")
    }
}
