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
        let &[batch, heads, length, head_dim] = keys.shape() else {
            return Err(Exception::custom(format!(
                "paged attention expects keys of shape [B, H_kv, L, D], got {:?}",
                keys.shape()
            )));
        };
        // [B, H_kv, L, D] -> [B, L, H_kv, D] -> [B * L, H_kv, D]: one row per slot written.
        let rows = |new: &Array| {
            new.swap_axes(1, 2)?
                .reshape(&[batch * length, heads, head_dim])
        };
        for (pages, new) in [(&mut self.keys, keys), (&mut self.values, values)] {
            let pages = match pages {
                Some(pages) => pages,
                None => pages.insert(ops::zeros_dtype(
                    &[self.num_slots, heads, head_dim],
                    new.dtype(),
                )?),
            };
            if pages.shape()[1..] != [heads, head_dim] {
                return Err(Exception::custom(format!(
                    "the pages hold [slots, H_kv, D] = {:?}, the new keys are {:?}",
                    pages.shape(),
                    keys.shape()
                )));
            }
            pages.try_index_mut(plan.write_slots().clone(), rows(new)?)?; // scatter into [slots, H_kv, D]
        }
        Ok(())
    }

    /// Reads every key and value the plan's rows attend to, as one dense batch.
    ///
    /// - Returns `(keys, values)`, each `[B, H_kv, S, D]`: position `j` of row `b` is slot
    ///   `plan.read_slots()[b, j]`.
    /// - Fails before the first write.
    ///
    /// Book: week 3, chapter 12 (paged KV cache), task 3.
    pub fn gather(&self, plan: &StepPlan) -> Result<(Array, Array)> {
        let (Some(keys), Some(values)) = (&self.keys, &self.values) else {
            return Err(Exception::custom(
                "the pages are empty: write before you gather",
            ));
        };
        let read = |pages: &Array| {
            pages
                .take_axis(plan.read_slots(), 0)? // [B, S, H_kv, D]
                .swap_axes(1, 2) // [B, H_kv, S, D]
        };
        Ok((read(keys)?, read(values)?))
    }
}
