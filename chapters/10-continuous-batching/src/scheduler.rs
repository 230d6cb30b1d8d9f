//! The scheduler's work in a step (its queues and the step itself are in
//! `src/scheduler_queues.rs`): prefilling prompts in chunks, decoding every running request in one
//! batch, and cancelling a request wherever it is.

use crate::{
    attach_logprobs,
    scheduler_queues::{choose, record, Decoding, Prefilling},
    Event, Scheduler,
};
use mlx_rs::{
    error::{Exception, Result},
    ops,
    ops::indexing::IndexOp,
    Array,
};
use sampling::Sampler;

impl Scheduler<'_> {
    /// Removes request `id` wherever it is (waiting, prefilling or decoding) and frees its cache;
    /// a decoding request's row leaves the batch. No event is emitted for it. Returns `false`
    /// when `id` is unknown (finished already, or never added).
    ///
    /// Book: week 2, chapter 10 (continuous batching), task 5.
    pub fn cancel(&mut self, id: u64) -> Result<bool> {
        todo!("chapter 10, task 5: find the request among the waiting, prefilling and decoding ones, and remove it")
    }

    /// One batched forward of every decoding request's last token.
    ///
    /// - The input is `[B, 1]`: row `b` holds `decoding[b]`'s last token, which the batched
    ///   cache does not hold yet.
    /// - Each row chooses its next token from its logits with [`choose`]; a greedy row
    ///   ([`Decoding::is_plain_greedy`]) may [`record`] its argmax from one over the whole batch
    ///   instead, which waits for the device once, not once per row. Once every row has chosen,
    ///   [`attach_logprobs`] fills in the log-probabilities of the step's `Token` events (one
    ///   wait for all the rows that asked), then the rows that finished leave the batch
    ///   ([`Scheduler::leave_batch`]), each with a `Finished` event.
    ///
    /// Book: week 2, chapter 10 (continuous batching), task 4.
    pub(crate) fn decode(&mut self, events: &mut Vec<Event>) -> Result<()> {
        todo!("chapter 10, task 4: run every row's last token as a [B, 1] batch, choose each row's next token, let finished rows leave")
    }

    /// Spends `budget` tokens on the prompts of prefilling requests, oldest first.
    ///
    /// - Each request runs at most one chunk per step, of `min(prompt tokens left, budget left,
    ///   prefill_chunk)` tokens, through the model with its own [`KvCache`](kv_cache::KvCache).
    /// - A request whose prompt is done chooses its first token from its last logits with
    ///   [`choose`] ([`attach_logprobs`] over those logits, `[1, V]`, fills in the token's
    ///   log-probabilities). If that finishes it, it leaves with a `Finished` event; otherwise its cache
    ///   joins the batch (one [`BatchKvCache::add`](crate::BatchKvCache::add) per layer) and it
    ///   starts decoding.
    ///
    /// Book: week 2, chapter 10 (continuous batching), task 3.
    pub(crate) fn prefill(&mut self, budget: usize, events: &mut Vec<Event>) -> Result<()> {
        todo!("chapter 10, task 3: run a chunk of each prefilling prompt; a finished prompt chooses its first token and joins the batch")
    }
}
