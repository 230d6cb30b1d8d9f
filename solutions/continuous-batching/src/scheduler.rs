//! The scheduler: requests wait, are prefilled (long prompts in chunks), then decode together,
//! one token each per step, and leave the batch as soon as they finish.

use crate::BatchKvCache;
use kv_cache::{KvCache, Model};
use mlx_rs::{
    error::{Exception, Result},
    ops,
    ops::indexing::IndexOp,
    Array,
};
use sampling::{Sampler, SamplingParams};
use std::collections::VecDeque;

/// One generation to run.
#[derive(Clone, Debug)]
pub struct Request {
    /// Chosen by the caller; events carry it.
    pub id: u64,
    pub prompt: Vec<u32>,
    pub max_new_tokens: usize,
    pub sampling: SamplingParams,
    /// Token ids that end the request (the model's EOS ids); not counted as output.
    pub stop_token_ids: Vec<u32>,
}

/// Why a request left the scheduler.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FinishReason {
    /// It chose one of its stop tokens.
    Stop,
    /// It generated `max_new_tokens` tokens.
    Length,
    /// [`Scheduler::cancel`] removed it.
    Cancelled,
}

/// What a step produced, in order, for the caller to route to each request's client.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    Token { id: u64, token: u32 },
    Finished { id: u64, reason: FinishReason },
}

/// The scheduler's limits.
#[derive(Clone, Copy, Debug)]
pub struct SchedulerConfig {
    /// Requests prefilling or decoding at once; the rest wait.
    pub max_running: usize,
    /// Tokens through the model per step: one per decoding request, the rest for prefill.
    pub token_budget: usize,
    /// The most prompt tokens of one request prefilled in one step.
    pub prefill_chunk: usize,
}

impl Default for SchedulerConfig {
    fn default() -> Self {
        SchedulerConfig {
            max_running: 16,
            token_budget: 512,
            prefill_chunk: 256,
        }
    }
}

/// A request whose prompt is going through the model, a chunk per step, in its own cache.
struct Prefilling {
    request: Request,
    cache: Vec<KvCache>,
}

/// A request in the batch: its cache is a row of the batched cache.
struct Decoding {
    request: Request,
    sampler: Sampler,
    /// The prompt and every token chosen; the last one is not in the cache yet.
    tokens: Vec<u32>,
    generated: usize,
}

impl Decoding {
    /// Whether its sampler would return the argmax of the logits as they are.
    fn is_plain_greedy(&self) -> bool {
        let sampling = &self.request.sampling;
        sampling.temperature == 0.0 && sampling.repetition_penalty.is_none()
    }
}

/// Continuous batching over one model.
///
/// Book: week 2, chapter 10 (continuous batching), tasks 3-5.
pub struct Scheduler<'m> {
    model: &'m Model,
    config: SchedulerConfig,
    waiting: VecDeque<Request>,
    prefilling: Vec<Prefilling>,
    /// Row `b` of every layer's batch cache is `decoding[b]`.
    decoding: Vec<Decoding>,
    batch: Vec<BatchKvCache>,
}

impl<'m> Scheduler<'m> {
    /// Fails when a limit is zero.
    pub fn new(model: &'m Model, config: SchedulerConfig) -> Result<Self> {
        if config.max_running == 0 || config.token_budget == 0 || config.prefill_chunk == 0 {
            return Err(Exception::custom(format!(
                "scheduler limits must be positive, got {config:?}"
            )));
        }
        Ok(Scheduler {
            model,
            config,
            waiting: VecDeque::new(),
            prefilling: Vec::new(),
            decoding: Vec::new(),
            batch: model
                .config()
                .num_hidden_layers
                .try_into()
                .map(|layers: usize| (0..layers).map(|_| BatchKvCache::new()).collect())
                .unwrap_or_default(),
        })
    }

    /// Queues a request; it starts when a running one leaves room.
    ///
    /// Fails on an empty prompt or invalid sampling parameters.
    pub fn add(&mut self, request: Request) -> Result<()> {
        if request.prompt.is_empty() {
            return Err(Exception::custom(format!(
                "request {}: the prompt has no tokens",
                request.id
            )));
        }
        Sampler::new(request.sampling)?;
        self.waiting.push_back(request);
        Ok(())
    }

    /// Requests waiting for room.
    pub fn waiting(&self) -> usize {
        self.waiting.len()
    }

    /// Requests prefilling or decoding.
    pub fn running(&self) -> usize {
        self.prefilling.len() + self.decoding.len()
    }

    /// Nothing to do until a request is added.
    pub fn is_idle(&self) -> bool {
        self.waiting.is_empty() && self.running() == 0
    }

    /// The bytes of every KV cache the scheduler holds (batched and prefilling).
    pub fn cache_bytes(&self) -> usize {
        let batched: usize = self.batch.iter().map(BatchKvCache::nbytes).sum();
        let prefilling: usize = self
            .prefilling
            .iter()
            .flat_map(|prefill| &prefill.cache)
            .map(KvCache::nbytes)
            .sum();
        batched + prefilling
    }

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

    fn leave_batch(&mut self, index: usize) -> Result<Decoding> {
        for layer in &mut self.batch {
            layer.remove(index)?;
        }
        Ok(self.decoding.remove(index))
    }

    /// One step: every decoding request gets one token (one batched forward), then the rest of
    /// the token budget prefills waiting requests, a chunk at a time, oldest first.
    ///
    /// - Admission: waiting requests start (first come, first served) while fewer than
    ///   `max_running` run.
    /// - A request whose prompt is done samples its first token from its last logits and joins
    ///   the batch (its cache becomes a row of the batched cache).
    /// - A request finishes on a stop token (not emitted), or after `max_new_tokens`.
    /// - Returns the events in order: `Token`s, and `Finished` for each request that ended.
    ///
    /// Book: week 2, chapter 10 (continuous batching), tasks 3 and 4.
    pub fn step(&mut self) -> Result<Vec<Event>> {
        let mut events = Vec::new();
        let mut budget = self.config.token_budget;
        if !self.decoding.is_empty() {
            budget = budget.saturating_sub(self.decoding.len());
            self.decode(&mut events)?;
        }
        while self.running() < self.config.max_running {
            let Some(request) = self.waiting.pop_front() else {
                break;
            };
            if request.max_new_tokens == 0 {
                events.push(Event::Finished {
                    id: request.id,
                    reason: FinishReason::Length,
                });
                continue;
            }
            let cache = self.model.new_cache();
            self.prefilling.push(Prefilling { request, cache });
        }
        self.prefill(budget, &mut events)?;
        Ok(events)
    }

    /// One batched forward of every decoding request's last token.
    ///
    /// - The input is `[B, 1]`: row `b` holds `decoding[b]`'s last token, which the batched
    ///   cache does not hold yet.
    /// - Each row chooses its next token from its logits with [`choose`]; a greedy row
    ///   ([`Decoding::is_plain_greedy`]) may [`record`] its argmax from one over the whole batch
    ///   instead, which waits for the device once, not once per row. Once every row has chosen,
    ///   the rows that finished leave the batch ([`Scheduler::leave_batch`]), each with a
    ///   `Finished` event.
    ///
    /// Book: week 2, chapter 10 (continuous batching), task 4.
    fn decode(&mut self, events: &mut Vec<Event>) -> Result<()> {
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
    ///   prefill_chunk)` tokens, through the model with its own [`KvCache`].
    /// - A request whose prompt is done chooses its first token from its last logits with
    ///   [`choose`]. If that finishes it, it leaves with a `Finished` event; otherwise its cache
    ///   joins the batch (one [`BatchKvCache::add`] per layer) and it starts decoding.
    ///
    /// Book: week 2, chapter 10 (continuous batching), task 3.
    fn prefill(&mut self, mut budget: usize, events: &mut Vec<Event>) -> Result<()> {
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
            let last_logits = logits.index((0, -1)); // [V]
            if let Some(reason) = choose(&mut decoding, &last_logits, events)? {
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

/// Samples `decoding`'s next token from `logits` `[V]` and [`record`]s it.
fn choose(
    decoding: &mut Decoding,
    logits: &Array,
    events: &mut Vec<Event>,
) -> Result<Option<FinishReason>> {
    let token = decoding.sampler.sample(logits, &decoding.tokens)?;
    Ok(record(decoding, token, events))
}

/// Emits `token` as `decoding`'s next unless it is a stop token, and says whether the request
/// is finished.
fn record(decoding: &mut Decoding, token: u32, events: &mut Vec<Event>) -> Option<FinishReason> {
    let request = &decoding.request;
    if request.stop_token_ids.contains(&token) {
        return Some(FinishReason::Stop);
    }
    decoding.tokens.push(token);
    decoding.generated += 1;
    events.push(Event::Token {
        id: request.id,
        token,
    });
    (decoding.generated >= request.max_new_tokens).then_some(FinishReason::Length)
}
