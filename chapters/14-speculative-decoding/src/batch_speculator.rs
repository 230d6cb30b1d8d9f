//! Speculative decoding in the server's batches: chapter 13's paged scheduler asks a
//! [`BatchSpeculator`] for each decoding row's draft, runs every row's draft in its one batched
//! forward, and asks it which tokens each row keeps, so that rows accept different numbers of
//! tokens in the same step. Given: it runs your drafters (tasks 1 and 4) and your verification
//! (tasks 2 and 3), with a drafter of its own for each request.

use crate::{
    processed_rows, verify_greedy, verify_sampled, Draft, Drafter, ModelDrafter, NgramDrafter,
    SpeculativeError,
};
use continuous_batching::Decoding;
use kv_cache::Model;
use mlx_rs::{
    error::{Exception, Result},
    ops,
    ops::indexing::IndexOp,
    random, Array,
};
use prefix_cache::Speculator;
use std::collections::HashMap;

/// Where the requests' draft tokens come from.
#[derive(Clone, Copy)]
pub enum BatchDrafting<'d> {
    /// Prompt lookup over each request's own tokens.
    Ngram(NgramDrafter),
    /// A draft model sharing the target's tokenizer, with a cache for each request.
    Model(&'d Model),
}

/// One request's drafter and what it proposed last.
struct RowDrafter<'d> {
    drafter: Box<dyn Drafter + 'd>,
    /// The last draft, whose distributions the rejection rule needs.
    draft: Draft,
    /// This request's own random stream for the rejection rule.
    key: Array,
}

/// Drafts and verifies for every decoding row of a paged scheduler
/// ([`PagedScheduler::with_speculator`](prefix_cache::PagedScheduler::with_speculator)).
///
/// - Greedy rows are verified with [`verify_greedy`], rows that sample with [`verify_sampled`]
///   (the rejection rule): each row's tokens follow exactly what the scheduler would have
///   chosen without speculation (greedy), or its distribution (sampling).
/// - The scheduler drafts nothing for rows under a constraint or asking for log-probabilities.
pub struct BatchSpeculator<'d> {
    drafting: BatchDrafting<'d>,
    num_draft_tokens: usize,
    vocab_size: i32,
    rows: HashMap<u64, RowDrafter<'d>>,
}

impl<'d> BatchSpeculator<'d> {
    /// Up to `num_draft_tokens` draft tokens per row per step, for a target of
    /// `target_vocab_size` tokens.
    ///
    /// - Fails when a draft model's vocabulary differs from the target's.
    pub fn new(
        drafting: BatchDrafting<'d>,
        num_draft_tokens: usize,
        target_vocab_size: i32,
    ) -> std::result::Result<Self, SpeculativeError> {
        if let BatchDrafting::Model(model) = drafting {
            let draft = model.config().vocab_size;
            if draft != target_vocab_size {
                return Err(SpeculativeError::VocabMismatch {
                    target: target_vocab_size,
                    draft,
                });
            }
        }
        Ok(BatchSpeculator {
            drafting,
            num_draft_tokens,
            vocab_size: target_vocab_size,
            rows: HashMap::new(),
        })
    }

    /// A drafter for `decoding`'s request, sampling as it does.
    fn row_drafter(&self, decoding: &Decoding) -> Result<RowDrafter<'d>> {
        let sampling = decoding.request.sampling;
        let drafter: Box<dyn Drafter + 'd> = match self.drafting {
            BatchDrafting::Ngram(ngram) => Box::new(ngram),
            BatchDrafting::Model(model) => {
                Box::new(ModelDrafter::new(model, self.vocab_size, sampling).map_err(mlx_error)?)
            }
        };
        Ok(RowDrafter {
            drafter,
            draft: Draft::default(),
            // Apart from the sampler's stream (the seed) and the draft model's (seed + 1).
            key: random::key(sampling.seed.wrapping_add(2))?,
        })
    }
}

impl Speculator for BatchSpeculator<'_> {
    fn draft(&mut self, decoding: &Decoding, limit: usize) -> Result<Vec<u32>> {
        let k = self.num_draft_tokens.min(limit);
        if k == 0 {
            return Ok(Vec::new());
        }
        let id = decoding.request.id;
        if !self.rows.contains_key(&id) {
            let row = self.row_drafter(decoding)?;
            self.rows.insert(id, row);
        }
        let row = self.rows.get_mut(&id).expect("inserted above");
        row.draft = row
            .drafter
            .propose(&decoding.tokens, k)
            .map_err(mlx_error)?;
        let tokens = &row.draft.tokens;
        Ok(tokens[..tokens.len().min(k)].to_vec())
    }

    fn verify(
        &mut self,
        decoding: &Decoding,
        logits: &Array,
        draft: &[u32],
    ) -> Result<(usize, u32)> {
        let sampling = &decoding.request.sampling;
        let rows = processed_rows(logits, &decoding.tokens, draft, sampling)?; // [n + 1, V]
        let verdict = if sampling.temperature == 0.0 {
            verify_greedy(&rows, draft)?
        } else {
            let id = decoding.request.id;
            let row = self.rows.get_mut(&id).ok_or_else(|| {
                Exception::custom(format!(
                    "request {id}: a draft to verify that was never proposed"
                ))
            })?;
            let n = draft.len() as i32;
            let p = ops::softmax_axis(&rows, -1, true)?; // [n + 1, V]
            let q = row
                .draft
                .probabilities_or_one_hot(self.vocab_size)
                .map_err(mlx_error)?
                .index((..n, ..)); // [n, V]
            let (step_key, next_key) = random::split(&row.key, 2)?;
            row.key = next_key;
            verify_sampled(&p, &q, draft, &step_key)?
        };
        Ok((verdict.accepted, verdict.next))
    }

    fn forget(&mut self, id: u64) {
        self.rows.remove(&id);
    }
}

/// Chapter 14's errors as the scheduler's.
fn mlx_error(error: SpeculativeError) -> Exception {
    match error {
        SpeculativeError::Mlx(error) => error,
        other => Exception::custom(other.to_string()),
    }
}
