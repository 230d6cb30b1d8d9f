//! One sequence generating over pages: what chapter 6's `generate` drives, so that paged output
//! can be checked token for token against the dense cache's. Given: it runs your
//! `forward_paged` and rewinds with your `BlockTable::truncate`.

use crate::{forward_paged, BlockTable, PagePool, PagedError};
use kv_cache::{DecodeError, LanguageModel, Model, ModelConfig};
use mlx_rs::{error::Exception, ops::indexing::IndexOp, Array};

/// A [`Model`] with a page pool of its own and one sequence's block table.
///
/// Given.
pub struct PagedSequence<'a> {
    model: &'a Model,
    pool: PagePool,
    table: BlockTable,
    /// The tokens whose keys and values the table's blocks hold.
    seen: Vec<u32>,
}

impl<'a> PagedSequence<'a> {
    /// A sequence whose pool has `num_blocks` blocks.
    pub fn new(model: &'a Model, num_blocks: usize) -> Self {
        PagedSequence {
            model,
            pool: PagePool::new(model.config().num_hidden_layers as usize, num_blocks),
            table: BlockTable::new(),
            seen: Vec::new(),
        }
    }

    pub fn pool(&self) -> &PagePool {
        &self.pool
    }

    pub fn table(&self) -> &BlockTable {
        &self.table
    }
}

impl From<PagedError> for DecodeError {
    fn from(error: PagedError) -> Self {
        match error {
            PagedError::Mlx(error) => DecodeError::Mlx(error),
            PagedError::Pool(error) => DecodeError::Mlx(Exception::custom(error.to_string())),
        }
    }
}

impl LanguageModel for PagedSequence<'_> {
    fn config(&self) -> &ModelConfig {
        self.model.config()
    }

    /// Runs the tokens of `sequence` the blocks do not hold yet, after rewinding to the longest
    /// prefix they share with it (at least one token runs: its logits are the answer).
    fn next_token_logits(&mut self, sequence: &[u32]) -> Result<Array, DecodeError> {
        let common = self
            .seen
            .iter()
            .zip(sequence)
            .take_while(|(seen, new)| seen == new)
            .count();
        let keep = common.min(sequence.len().saturating_sub(1));
        self.table
            .truncate(&mut self.pool, keep)
            .map_err(PagedError::from)?;
        self.seen.truncate(keep);
        let new = &sequence[keep..];
        let input = Array::from_slice(new, &[1, new.len() as i32]); // [1, L] uint32
        let logits = forward_paged(self.model, &mut self.pool, &mut [&mut self.table], &input)?;
        self.seen.extend_from_slice(new);
        Ok(logits.index((0, -1))) // [V]
    }
}
