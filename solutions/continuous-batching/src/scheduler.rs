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
        if let Some(index) = self.waiting.iter().position(|r| r.id == id) {
            self.waiting.remove(index);
            return Ok(true);
        }
        if let Some(index) = self.prefilling.iter().position(|p| p.request.id == id) {
            self.prefilling.remove(index);
            return Ok(true);
        }
        if let Some(index) = self.decoding.iter().position(|d| d.request.id == id) {
            self.leave_batch(index)?;
            return Ok(true);
        }
        Ok(false)
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
        let last: Vec<u32> = self
            .decoding
            .iter()
            .map(|d| d.tokens[d.tokens.len() - 1])
            .collect();
        let input = Array::from_slice(&last, &[last.len() as i32, 1]); // [B, 1]
        let logits = self.model.forward(&input, &mut self.batch)?; // [B, 1, V]
        let logits = logits.index((.., 0)); // [B, V]

        // A greedy row without a penalty takes the argmax: one op and one wait for all of them,
        // where sampling row by row would wait for the device once per row.
        let argmax = if self.decoding.iter().any(Decoding::is_plain_greedy) {
            ops::indexing::argmax_axis(&logits, -1, None)?
                .try_as_slice::<u32>()
                .map_err(|error| Exception::custom(error.to_string()))?
                .to_vec()
        } else {
            Vec::new()
        };
        let first_event = events.len();
        let mut finished = Vec::new();
        for (row, decoding) in self.decoding.iter_mut().enumerate() {
            let reason = if decoding.is_plain_greedy() {
                record(decoding, argmax[row], events)
            } else {
                choose(decoding, &logits.index(row as i32), events)?
            };
            if let Some(reason) = reason {
                finished.push((row, reason));
            }
        }
        let requests = self.decoding.iter().map(|decoding| &decoding.request);
        attach_logprobs(&logits, requests, &mut events[first_event..])?;
        // Highest rows first, so that the indices of the others stay valid.
        for (row, reason) in finished.into_iter().rev() {
            let decoding = self.leave_batch(row)?;
            events.push(Event::Finished {
                id: decoding.request.id,
                reason,
            });
        }
        Ok(())
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
    pub(crate) fn prefill(&mut self, mut budget: usize, events: &mut Vec<Event>) -> Result<()> {
        let mut index = 0;
        while index < self.prefilling.len() && budget > 0 {
            let prefilling = &mut self.prefilling[index];
            let done = prefilling.cache[0].offset() as usize;
            let prompt = &prefilling.request.prompt;
            let chunk = (prompt.len() - done)
                .min(budget)
                .min(self.config.prefill_chunk);
            let input = Array::from_slice(&prompt[done..done + chunk], &[1, chunk as i32]); // [1, C]
            let logits = self.model.forward(&input, &mut prefilling.cache)?; // [1, C, V]
            budget -= chunk;
            if done + chunk < prompt.len() {
                index += 1;
                continue;
            }
            let Prefilling { request, cache } = self.prefilling.remove(index);
            let mut decoding = Decoding {
                sampler: Sampler::new(request.sampling)?,
                tokens: request.prompt.clone(),
                generated: 0,
                request,
            };
            let last_logits = logits.index((.., -1)); // [1, V]
            let first_event = events.len();
            let reason = choose(&mut decoding, &last_logits.index(0), events)?;
            let request = std::iter::once(&decoding.request);
            attach_logprobs(&last_logits, request, &mut events[first_event..])?;
            if let Some(reason) = reason {
                events.push(Event::Finished {
                    id: decoding.request.id,
                    reason,
                });
                continue;
            }
            for (layer, layer_cache) in self.batch.iter_mut().zip(&cache) {
                let (keys, values) = layer_cache
                    .contents()
                    .ok_or_else(|| Exception::custom("a prefilled cache is empty"))?;
                layer.add(&keys, &values)?;
            }
            self.decoding.push(decoding);
        }
        Ok(())
    }
}
