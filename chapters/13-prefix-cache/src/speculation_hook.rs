//! Speculative decoding (week 3, chapter 14) in the paged scheduler: each decoding row runs a
//! few guessed tokens after its last one in the step's one batched forward, keeps those the
//! target agrees with, and gives back the blocks past them. Given: the [`Speculator`] hook
//! (chapter 14 implements it), the decode step that uses it, and rewinding a block table whose
//! blocks the prefix cache may share.
//!
//! ```text
//! input [B, 1 + W], W = 3       the target says          kept in the pool    next (pending)
//! row 0: last d0  d1  d2        d0 d1 right, d2 wrong    last d0 d1          its token for d2
//! row 1: last d0  pad pad       d0 wrong                 last                its token for d0
//! row 2: last pad pad pad       (no draft: constrained)  last                its sampled token
//! ```

use crate::{paged_scheduler_queues::pool_error, PagedScheduler, PrefixCache};
use continuous_batching::{attach_logprobs, choose, record, Decoding, Event, FinishReason};
use mlx_rs::{error::Result, ops::indexing::IndexOp, Array};
use paged_kv_cache::{blocks_for, BlockTable, PoolError};
use std::iter;

/// Guesses the next tokens of decoding rows, and judges the guesses by the target's logits.
pub trait Speculator {
    /// Up to `limit` tokens that may follow `decoding.tokens` (whose last token the cache does
    /// not hold yet); none to decode the row one token at a time.
    fn draft(&mut self, decoding: &Decoding, limit: usize) -> Result<Vec<u32>>;

    /// `(accepted, next)`: how many tokens of `draft`, from the first, to keep, and the token
    /// after them, from the target's `logits` `[n + 1, V]` for a draft of `n` (row `i` follows
    /// `decoding.tokens` and `draft[..i]`). `draft` may be shorter than the last one proposed
    /// (when the pool could not hold it all).
    fn verify(
        &mut self,
        decoding: &Decoding,
        logits: &Array,
        draft: &[u32],
    ) -> Result<(usize, u32)>;

    /// Request `id` stopped running (finished, cancelled or preempted): drop what was kept for
    /// it.
    fn forget(&mut self, id: u64);
}

impl PrefixCache {
    /// Keeps the first `length` tokens of `table` and drops its references to the blocks past
    /// them: chapter 12's [`BlockTable::truncate`] for blocks the prefix cache counts. Rewinds
    /// a row past the draft tokens the target rejected.
    ///
    /// - Fails with [`PoolError::BadLength`] when `length > table.len()`, changing nothing.
    pub fn truncate(
        &mut self,
        table: &mut BlockTable,
        length: usize,
    ) -> std::result::Result<(), PoolError> {
        if length > table.len() {
            return Err(PoolError::BadLength {
                length: table.len(),
                requested: length,
            });
        }
        let keep = blocks_for(length);
        for &block in &table.blocks()[keep..] {
            self.drop_ref(block)?;
        }
        *table = BlockTable::with_blocks(table.blocks()[..keep].to_vec(), length);
        Ok(())
    }
}

/// Whether a row may run a draft: not under a constraint (its grammar would have to follow
/// every guess) nor asking for log-probabilities (they are read from each step's first
/// position); such rows decode one token per step, exactly as without speculation.
fn may_speculate(decoding: &Decoding) -> bool {
    decoding.request.constraint.is_none() && decoding.request.logprobs.is_none()
}

impl PagedScheduler<'_> {
    /// The decode step with a speculator: one batched forward of every decoding row's last
    /// token and its draft, `[B, 1 + W]` (shorter drafts padded with the last token, whose
    /// logits are ignored), then each row keeps its accepted tokens and the target's next one
    /// and rewinds its table past the rest. Returns the tokens that went through the model.
    pub(crate) fn decode_speculative(&mut self, events: &mut Vec<Event>) -> Result<usize> {
        let rows = self.decoding_rows();
        if rows.is_empty() {
            return Ok(0);
        }
        // make_room saw to a block for every row's last token: take those first.
        self.reserve_rows(&rows, 1)?;
        let mut drafts = self.drafts(&rows)?;
        let width = self.fitting_width(&rows, drafts.iter().map(Vec::len).max().unwrap_or(0));
        drafts.iter_mut().for_each(|draft| draft.truncate(width));
        self.reserve_rows(&rows, 1 + width)?;
        let input: Vec<u32> = rows
            .iter()
            .zip(&drafts)
            .flat_map(|(&row, draft)| {
                let last = *self.running[row].decoding.tokens.last().expect("decoding");
                iter::once(last)
                    .chain(draft.iter().copied())
                    .chain(iter::repeat(last))
                    .take(1 + width)
            })
            .collect();
        let input = Array::from_slice(&input, &[rows.len() as i32, 1 + width as i32]); // [B, 1 + W]
        let logits = self.forward_decoding(&input)?; // [B, 1 + W, V]

        let first_event = events.len();
        let mut finished = Vec::new();
        for (batch_row, (&row, draft)) in rows.iter().zip(&drafts).enumerate() {
            let (accepted, reason) =
                self.choose_run(row, &logits.index(batch_row as i32), draft, events)?;
            // The pool holds the row's last token and its whole padded draft: keep the last
            // token and the accepted ones (up to a stop token, which is not kept).
            let running = &mut self.running[row];
            let before = running.table.len() - 1 - width;
            let kept = (before + 1 + accepted).min(running.decoding.tokens.len());
            self.cache
                .truncate(&mut running.table, kept)
                .map_err(pool_error)?;
            self.commit(row);
            self.speculation.row_steps += 1;
            self.speculation.drafted += draft.len();
            self.speculation.accepted += accepted;
            if let Some(reason) = reason {
                finished.push((row, reason));
            }
        }
        // Only rows without a draft ask for log-probabilities: their one token came from the
        // first position.
        let requests = rows.iter().map(|&row| &self.running[row].decoding.request);
        attach_logprobs(&logits.index((.., 0)), requests, &mut events[first_event..])?;
        for (row, reason) in finished.into_iter().rev() {
            let decoding = self.finish(row)?;
            events.push(Event::Finished {
                id: decoding.request.id,
                reason,
            });
        }
        Ok(rows.len() * (1 + width))
    }

    /// Each row's draft: up to one token fewer than it may still generate (the step adds the
    /// target's own token), none for a row that may not speculate.
    fn drafts(&mut self, rows: &[usize]) -> Result<Vec<Vec<u32>>> {
        let speculator = self
            .speculator
            .as_mut()
            .expect("decode_speculative runs with a speculator");
        rows.iter()
            .map(|&row| {
                let decoding = &self.running[row].decoding;
                let limit = decoding
                    .request
                    .max_new_tokens
                    .saturating_sub(decoding.generated + 1);
                if limit == 0 || !may_speculate(decoding) {
                    return Ok(Vec::new());
                }
                let mut draft = speculator.draft(decoding, limit)?;
                draft.truncate(limit);
                Ok(draft)
            })
            .collect()
    }

    /// The widest draft, up to `widest`, for which the pool has every row's blocks and the
    /// step's token budget every row's tokens (each row runs `1 + W`). 0 always fits: the rows'
    /// last tokens have their blocks already, and drafts never take the budget below one token
    /// per row.
    fn fitting_width(&self, rows: &[usize], widest: usize) -> usize {
        let blocks_needed = |width: usize| -> usize {
            rows.iter()
                .map(|&row| {
                    let table = &self.running[row].table;
                    blocks_for(table.len() + 1 + width).saturating_sub(table.blocks().len())
                })
                .sum()
        };
        (0..=widest)
            .rev()
            .find(|&width| {
                rows.len() * (1 + width) <= self.config.scheduler.token_budget
                    && blocks_needed(width) <= self.cache.available()
            })
            .unwrap_or(0)
    }

    /// Row `row` takes its tokens from its logits `[1 + W, V]`: without a draft, one token as
    /// without speculation ([`choose`]); with one, the speculator's verdict, the accepted
    /// tokens then the next one, each [`record`]ed until one finishes the request. Returns how
    /// many draft tokens were accepted, and why the request finished, if it did.
    fn choose_run(
        &mut self,
        row: usize,
        logits: &Array,
        draft: &[u32],
        events: &mut Vec<Event>,
    ) -> Result<(usize, Option<FinishReason>)> {
        let decoding = &mut self.running[row].decoding;
        if draft.is_empty() {
            return Ok((0, choose(decoding, &logits.index(0), events)?));
        }
        let speculator = self
            .speculator
            .as_mut()
            .expect("decode_speculative runs with a speculator");
        let rows = logits.index(..draft.len() as i32 + 1); // [n + 1, V]
        let (accepted, next) = speculator.verify(decoding, &rows, draft)?;
        let accepted = accepted.min(draft.len());
        let reason = draft[..accepted]
            .iter()
            .chain([&next])
            .find_map(|&token| record(decoding, token, events));
        Ok((accepted, reason))
    }
}
