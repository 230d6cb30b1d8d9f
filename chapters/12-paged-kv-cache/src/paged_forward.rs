//! The week-2 model's forward pass over paged sequences: reserve their blocks, plan the step,
//! run every layer on its pages, and count the new tokens in.

use crate::{blocks_for, BlockTable, PagePool, PagedError, PagedLayer, PoolError, StepPlan};
use kv_cache::Model;
use mlx_rs::{error::Exception, Array};

/// Runs `L` new tokens of each of `B` sequences, whose earlier tokens are in `pool` at the
/// blocks of `tables` (one table per sequence, in the rows' order).
///
/// - `tokens`: `[B, L]` integer ids, `B = tables.len()`. Returns the logits `[B, L, V]`, float32.
/// - Reserves the blocks the new tokens need, all rows or none: when the pool has too few free
///   blocks, fails with [`PoolError::Exhausted`] and no table or block changes.
/// - Plans the step once ([`StepPlan::new`]), runs the model with one [`PagedLayer`] per layer,
///   then advances every table by `L`.
///
/// Book: week 3, chapter 12 (paged KV cache), task 4.
pub fn forward_paged(
    model: &Model,
    pool: &mut PagePool,
    tables: &mut [&mut BlockTable],
    tokens: &Array,
) -> Result<Array, PagedError> {
    todo!("chapter 12, task 4: reserve every row or none, plan the step, run the model on one PagedLayer per layer, advance the tables")
}
