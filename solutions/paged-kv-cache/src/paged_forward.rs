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
    let &[batch, length] = tokens.shape() else {
        return Err(Exception::custom(format!(
            "paged forward expects tokens of shape [B, L], got {:?}",
            tokens.shape()
        ))
        .into());
    };
    if batch as usize != tables.len() {
        return Err(Exception::custom(format!(
            "{batch} rows of tokens for {} block tables",
            tables.len()
        ))
        .into());
    }
    let new_tokens = length as usize;
    let missing: usize = tables
        .iter()
        .map(|table| blocks_for(table.len() + new_tokens).saturating_sub(table.blocks().len()))
        .sum();
    if missing > pool.num_free() {
        return Err(PoolError::Exhausted {
            requested: missing,
            free: pool.num_free(),
            total: pool.num_blocks(),
        }
        .into());
    }
    for table in tables.iter_mut() {
        table.reserve(pool, new_tokens)?;
    }
    let plan = {
        let rows: Vec<&BlockTable> = tables.iter().map(|table| &**table).collect();
        StepPlan::new(&rows, new_tokens)?
    };
    let mut layers: Vec<PagedLayer> = pool
        .layers_mut()
        .iter_mut()
        .map(|pages| PagedLayer { pages, plan: &plan })
        .collect();
    let logits = model.forward(tokens, &mut layers)?; // [B, L, V]
    for table in tables.iter_mut() {
        table.advance(new_tokens);
    }
    Ok(logits)
}
