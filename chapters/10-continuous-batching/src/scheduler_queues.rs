//! Where the scheduler keeps its requests: the [`Scheduler`] type and its limits, the queues a
//! request moves through (waiting, prefilling, decoding), the step that runs them, and how a
//! request records the tokens it chooses. Given: your code in `src/scheduler.rs` prefills,
//! decodes and cancels.

use crate::{BatchKvCache, Event, FinishReason, Request};
use kv_cache::{KvCache, Model};
use mlx_rs::{
    error::{Exception, Result},
    Array,
};
use sampling::Sampler;
use std::collections::VecDeque;

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
pub(crate) struct Prefilling {
    pub(crate) request: Request,
    pub(crate) cache: Vec<KvCache>,
}

/// A request in the batch: its cache is a row of the batched cache. (Chapter 13's paged
/// scheduler keeps its requests' state in it too.)
pub struct Decoding {
    pub request: Request,
    pub sampler: Sampler,
    /// The prompt and every token chosen; the last one is not in the cache yet.
    pub tokens: Vec<u32>,
    pub generated: usize,
}

impl Decoding {
    /// A request that has chosen no token yet. Fails on invalid sampling parameters.
    pub fn new(request: Request) -> Result<Self> {
        Ok(Decoding {
            sampler: Sampler::new(request.sampling)?,
            tokens: request.prompt.clone(),
            generated: 0,
            request,
        })
    }

    /// Whether its sampler would return the argmax of the logits as they are (no constraint
    /// masks them).
    pub fn is_plain_greedy(&self) -> bool {
        let sampling = &self.request.sampling;
        sampling.temperature == 0.0
            && sampling.repetition_penalty.is_none()
            && self.request.constraint.is_none()
    }
}

/// Continuous batching over one model.
///
/// Given; prefilling, decoding and cancelling are yours (book: week 2, chapter 10 (continuous
/// batching), tasks 3-5).
pub struct Scheduler<'m> {
    pub(crate) model: &'m Model,
    pub(crate) config: SchedulerConfig,
    pub(crate) waiting: VecDeque<Request>,
    pub(crate) prefilling: Vec<Prefilling>,
    /// Row `b` of every layer's batch cache is `decoding[b]`.
    pub(crate) decoding: Vec<Decoding>,
    pub(crate) batch: Vec<BatchKvCache>,
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

    /// Removes row `index` from every layer's batch cache and from `decoding`.
    pub(crate) fn leave_batch(&mut self, index: usize) -> Result<Decoding> {
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
    /// Given: it runs your `decode` (task 4) and `prefill` (task 3).
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
}

/// Samples `decoding`'s next token from `logits` `[V]` and [`record`]s it. A request with a
/// constraint samples from the tokens it allows, and the constraint follows the token.
pub fn choose(
    decoding: &mut Decoding,
    logits: &Array,
    events: &mut Vec<Event>,
) -> Result<Option<FinishReason>> {
    let Some(constraint) = decoding.request.constraint.clone() else {
        let token = decoding.sampler.sample(logits, &decoding.tokens)?;
        return Ok(record(decoding, token, events));
    };
    let token = decoding
        .sampler
        .sample(&constraint.mask(logits)?, &decoding.tokens)?;
    constraint.advance(token)?;
    Ok(record(decoding, token, events))
}

/// Emits `token` as `decoding`'s next unless it is a stop token, and says whether the request
/// is finished.
pub fn record(
    decoding: &mut Decoding,
    token: u32,
    events: &mut Vec<Event>,
) -> Option<FinishReason> {
    let request = &decoding.request;
    if request.stop_token_ids.contains(&token) {
        return Some(FinishReason::Stop);
    }
    decoding.tokens.push(token);
    decoding.generated += 1;
    events.push(Event::Token {
        id: request.id,
        token,
        logprobs: None,
    });
    (decoding.generated >= request.max_new_tokens).then_some(FinishReason::Length)
}
