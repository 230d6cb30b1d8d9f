//! Continuous batching over the prefix cache: the [`PagedScheduler`] type, its queues, and the
//! step that prefills and decodes over pages. Given: your code in `src/paged_scheduler.rs`
//! admits requests by free blocks and preempts them when the pool runs out.
//!
//! It schedules like chapter 10's (decode every running request, then prefill prompts a chunk
//! at a time within the token budget), but a request's keys and values live in the shared pool,
//! its prompt starts after the blocks the prefix cache already holds, and running out of blocks
//! preempts the newest request instead of failing.

use crate::{PrefixCache, Speculator};
use continuous_batching::{
    attach_logprobs, choose, record, Batcher, Decoding, Event, KvPoolStats, Request,
    SchedulerConfig, SpeculationCounts,
};
use kv_cache::Model;
use mlx_rs::{
    error::{Exception, Result},
    ops,
    ops::indexing::IndexOp,
    Array,
};
use paged_kv_cache::{blocks_for, forward_paged, BlockTable, PagedError, BLOCK_SIZE};
use std::collections::{HashMap, VecDeque};

/// The paged scheduler's limits: chapter 10's, the pool's size, and whether to share prefixes.
#[derive(Clone, Copy, Debug)]
pub struct PagedConfig {
    pub scheduler: SchedulerConfig,
    /// Blocks of [`BLOCK_SIZE`] positions in the pool.
    pub num_blocks: usize,
    /// Whether prompts start from the blocks earlier requests left (off: every prompt runs whole).
    pub prefix_caching: bool,
}

/// A request admitted to the pool.
pub(crate) struct Running {
    pub(crate) decoding: Decoding,
    pub(crate) table: BlockTable,
    /// Prompt tokens the prefix cache held when it was admitted.
    pub(crate) cached_tokens: usize,
}

impl Running {
    /// How many of its tokens must be in the pool before it decodes: all of a new request's
    /// prompt (whose last logits choose its first token), all but the last token of one that has
    /// chosen tokens already (a request resumed after preemption).
    pub(crate) fn target(&self) -> usize {
        target(&self.decoding)
    }

    /// Whether its prompt is in the pool and its last chosen token is not: it decodes this step.
    pub(crate) fn is_decoding(&self) -> bool {
        self.decoding.generated > 0 && self.table.len() == self.target()
    }
}

/// See [`Running::target`].
pub(crate) fn target(decoding: &Decoding) -> usize {
    decoding.tokens.len() - usize::from(decoding.generated > 0)
}

/// Continuous batching over a [`PrefixCache`].
///
/// Given; admission and preemption are yours (book: week 3, chapter 13 (prefix cache), task 4).
pub struct PagedScheduler<'m> {
    pub(crate) model: &'m Model,
    pub(crate) config: PagedConfig,
    pub(crate) cache: PrefixCache,
    /// New requests, and preempted ones (at the front) with the tokens they had chosen.
    pub(crate) waiting: VecDeque<Decoding>,
    /// In the order they were admitted.
    pub(crate) running: Vec<Running>,
    pub(crate) preemptions: usize,
    /// Drafts tokens for the decoding rows and verifies them (chapter 14); `None`: one token
    /// per row per step.
    pub(crate) speculator: Option<Box<dyn Speculator + 'm>>,
    pub(crate) speculation: SpeculationCounts,
}

impl<'m> PagedScheduler<'m> {
    /// Fails when a limit is zero.
    pub fn new(model: &'m Model, config: PagedConfig) -> Result<Self> {
        let limits = config.scheduler;
        if limits.max_running == 0
            || limits.token_budget == 0
            || limits.prefill_chunk == 0
            || config.num_blocks == 0
        {
            return Err(Exception::custom(format!(
                "scheduler limits must be positive, got {config:?}"
            )));
        }
        let layers = model.config().num_hidden_layers as usize;
        Ok(PagedScheduler {
            model,
            config,
            cache: PrefixCache::new(layers, config.num_blocks),
            waiting: VecDeque::new(),
            running: Vec::new(),
            preemptions: 0,
            speculator: None,
            speculation: SpeculationCounts::default(),
        })
    }

    /// Decodes with `speculator`'s drafts: every row verifies its own in the step's one
    /// batched forward and keeps as many tokens as the target accepts (chapter 14).
    pub fn with_speculator(mut self, speculator: Box<dyn Speculator + 'm>) -> Self {
        self.speculator = Some(speculator);
        self
    }

    /// Queues a request. Fails on an empty prompt, invalid sampling parameters, or a prompt
    /// that the whole pool could not hold.
    pub fn add(&mut self, request: Request) -> Result<()> {
        if request.prompt.is_empty() {
            return Err(Exception::custom(format!(
                "request {}: the prompt has no tokens",
                request.id
            )));
        }
        let needed = blocks_for(request.prompt.len() + 1);
        if needed > self.config.num_blocks {
            return Err(Exception::custom(format!(
                "request {}: a prompt of {} tokens needs {needed} KV blocks of {BLOCK_SIZE}, the pool has {}: shorten it or give the pool more blocks (--kv-blocks)",
                request.id,
                request.prompt.len(),
                self.config.num_blocks
            )));
        }
        self.waiting.push_back(Decoding::new(request)?);
        Ok(())
    }

    pub fn waiting(&self) -> usize {
        self.waiting.len()
    }

    pub fn running(&self) -> usize {
        self.running.len()
    }

    pub fn is_idle(&self) -> bool {
        self.waiting.is_empty() && self.running.is_empty()
    }

    pub fn cache(&self) -> &PrefixCache {
        &self.cache
    }

    /// The bytes of the pool's pages.
    pub fn cache_bytes(&self) -> usize {
        self.cache.pool().nbytes()
    }

    /// How many times a request was preempted to make room.
    pub fn preemptions(&self) -> usize {
        self.preemptions
    }

    /// The prompt tokens the prefix cache held when request `id` was admitted; `None` unless it
    /// is running.
    pub fn cached_tokens(&self, id: u64) -> Option<usize> {
        self.running
            .iter()
            .find(|running| running.decoding.request.id == id)
            .map(|running| running.cached_tokens)
    }

    /// The block table of running request `id`.
    pub fn block_table(&self, id: u64) -> Option<&BlockTable> {
        self.running
            .iter()
            .find(|running| running.decoding.request.id == id)
            .map(|running| &running.table)
    }

    /// Removes request `id` wherever it is and releases its blocks; `false` when unknown.
    pub fn cancel(&mut self, id: u64) -> Result<bool> {
        if let Some(index) = self.waiting.iter().position(|d| d.request.id == id) {
            self.waiting.remove(index);
            return Ok(true);
        }
        if let Some(index) = self
            .running
            .iter()
            .position(|r| r.decoding.request.id == id)
        {
            self.finish(index)?;
            return Ok(true);
        }
        Ok(false)
    }

    /// One step: make room and decode every request whose prompt is in the pool (one batched
    /// forward), admit waiting requests, then spend the rest of the token budget on prompts.
    /// Returns the events in order, as chapter 10's scheduler does.
    ///
    /// Given: it runs your `make_room` and `admit` (task 4).
    pub fn step(&mut self) -> Result<Vec<Event>> {
        let mut events = Vec::new();
        self.make_room(&mut events)?;
        let decoded = match self.speculator {
            Some(_) => self.decode_speculative(&mut events)?,
            None => self.decode(&mut events)?,
        };
        self.admit(&mut events)?;
        let budget = self.config.scheduler.token_budget.saturating_sub(decoded);
        self.prefill(budget, &mut events)?;
        Ok(events)
    }

    /// Removes running request `index` and releases its blocks.
    pub(crate) fn finish(&mut self, index: usize) -> Result<Decoding> {
        let Running {
            decoding, table, ..
        } = self.running.remove(index);
        self.cache.release(table).map_err(pool_error)?;
        if let Some(speculator) = &mut self.speculator {
            speculator.forget(decoding.request.id);
        }
        Ok(decoding)
    }

    /// Registers the full blocks of running request `index` for sharing, when enabled.
    pub(crate) fn commit(&mut self, index: usize) {
        if self.config.prefix_caching {
            let running = &self.running[index];
            self.cache.commit(&running.table, &running.decoding.tokens);
        }
    }

    /// The running requests that decode this step (their prompt is in the pool), in order.
    pub(crate) fn decoding_rows(&self) -> Vec<usize> {
        (0..self.running.len())
            .filter(|&index| self.running[index].is_decoding())
            .collect()
    }

    /// Makes room for `tokens` more tokens in the table of each of `rows`.
    pub(crate) fn reserve_rows(&mut self, rows: &[usize], tokens: usize) -> Result<()> {
        for &row in rows {
            let table = &mut self.running[row].table;
            self.cache.reserve(table, tokens).map_err(pool_error)?;
        }
        Ok(())
    }

    /// The model over the decoding requests' tables: `input` `[B, L]`, a row per
    /// [`decoding_rows`](Self::decoding_rows) in order. Returns the logits `[B, L, V]`.
    pub(crate) fn forward_decoding(&mut self, input: &Array) -> Result<Array> {
        let mut tables: Vec<&mut BlockTable> = self
            .running
            .iter_mut()
            .filter(|running| running.is_decoding())
            .map(|running| &mut running.table)
            .collect();
        forward_paged(self.model, self.cache.pool_mut(), &mut tables, input).map_err(paged_error)
    }

    /// One batched forward of the last token of every decoding request; returns how many ran.
    fn decode(&mut self, events: &mut Vec<Event>) -> Result<usize> {
        let rows = self.decoding_rows();
        if rows.is_empty() {
            return Ok(0);
        }
        self.reserve_rows(&rows, 1)?;
        let last: Vec<u32> = rows
            .iter()
            .map(|&row| *self.running[row].decoding.tokens.last().expect("decoding"))
            .collect();
        let input = Array::from_slice(&last, &[rows.len() as i32, 1]); // [B, 1]
        let logits = self.forward_decoding(&input)?.index((.., 0)); // [B, V]
        let any_greedy = rows
            .iter()
            .any(|&row| self.running[row].decoding.is_plain_greedy());
        let argmax: Vec<u32> = if any_greedy {
            ops::indexing::argmax_axis(&logits, -1, None)?
                .try_as_slice::<u32>()
                .map_err(|error| Exception::custom(error.to_string()))?
                .to_vec()
        } else {
            Vec::new()
        };
        let first_event = events.len();
        let mut finished = Vec::new();
        for (batch_row, &row) in rows.iter().enumerate() {
            self.commit(row);
            let decoding = &mut self.running[row].decoding;
            let reason = if decoding.is_plain_greedy() {
                record(decoding, argmax[batch_row], events)
            } else {
                choose(decoding, &logits.index(batch_row as i32), events)?
            };
            if let Some(reason) = reason {
                finished.push((row, reason));
            }
        }
        let requests = rows.iter().map(|&row| &self.running[row].decoding.request);
        attach_logprobs(&logits, requests, &mut events[first_event..])?;
        for (row, reason) in finished.into_iter().rev() {
            let decoding = self.finish(row)?;
            events.push(Event::Finished {
                id: decoding.request.id,
                reason,
            });
        }
        Ok(rows.len())
    }

    /// Spends `budget` tokens on the prompts of admitted requests, oldest first, at most
    /// `prefill_chunk` tokens per request per step. The prompts go in groups: the oldest one sets
    /// the chunk `C`, and every prompt with at least `C` tokens left runs `C` of them in the same
    /// forward `[G, C]`, so that requests admitted together are prefilled together. A new
    /// request whose prompt is done chooses its first token.
    fn prefill(&mut self, mut budget: usize, events: &mut Vec<Event>) -> Result<()> {
        // Prompt tokens each request (by id) has run in this step.
        let mut ran: HashMap<u64, usize> = HashMap::new();
        while budget > 0 {
            // (index, prompt tokens it may still run in this step) of the prompts not done,
            // oldest first.
            let pending: Vec<(usize, usize)> = self
                .running
                .iter()
                .enumerate()
                .map(|(index, running)| {
                    let ran = ran.get(&running.decoding.request.id).copied().unwrap_or(0);
                    let left = (running.target() - running.table.len())
                        .min(self.config.scheduler.prefill_chunk - ran);
                    (index, left)
                })
                .filter(|&(_, left)| left > 0)
                .collect();
            let Some(&(_, oldest_left)) = pending.first() else {
                break;
            };
            let chunk = oldest_left.min(budget);
            let group: Vec<usize> = pending
                .iter()
                .filter(|&&(_, left)| left >= chunk)
                .map(|&(index, _)| index)
                .take(budget / chunk)
                .collect();
            let tokens: Vec<u32> = group
                .iter()
                .flat_map(|&index| {
                    let running = &self.running[index];
                    let done = running.table.len();
                    running.decoding.tokens[done..done + chunk].iter().copied()
                })
                .collect();
            let input = Array::from_slice(&tokens, &[group.len() as i32, chunk as i32]); // [G, C]
            let mut tables: Vec<&mut BlockTable> = self
                .running
                .iter_mut()
                .enumerate()
                .filter(|(index, _)| group.contains(index))
                .map(|(_, running)| &mut running.table)
                .collect();
            let logits = forward_paged(self.model, self.cache.pool_mut(), &mut tables, &input)
                .map_err(paged_error)?; // [G, C, V]
            budget -= chunk * group.len();
            let mut finished = Vec::new();
            for (group_row, &index) in group.iter().enumerate() {
                self.commit(index);
                let running = &mut self.running[index];
                *ran.entry(running.decoding.request.id).or_default() += chunk;
                if running.table.len() < running.target() || running.decoding.generated > 0 {
                    continue;
                }
                let row = group_row as i32;
                let last_logits = logits.index((row..row + 1, -1)); // [1, V]
                let first_event = events.len();
                let reason = choose(&mut running.decoding, &last_logits.index(0), events)?;
                let request = std::iter::once(&running.decoding.request);
                attach_logprobs(&last_logits, request, &mut events[first_event..])?;
                if let Some(reason) = reason {
                    events.push(Event::Finished {
                        id: running.decoding.request.id,
                        reason,
                    });
                    finished.push(index);
                }
            }
            for index in finished.into_iter().rev() {
                self.finish(index)?;
            }
        }
        Ok(())
    }
}

/// The pool's refusals and MLX's errors, as the scheduler's error.
pub(crate) fn pool_error(error: paged_kv_cache::PoolError) -> Exception {
    Exception::custom(error.to_string())
}

pub(crate) fn paged_error(error: PagedError) -> Exception {
    match error {
        PagedError::Mlx(error) => error,
        PagedError::Pool(error) => pool_error(error),
    }
}

/// The server's engine thread drives it like chapter 10's scheduler.
impl Batcher for PagedScheduler<'_> {
    fn add(&mut self, request: Request) -> Result<()> {
        PagedScheduler::add(self, request)
    }

    fn step(&mut self) -> Result<Vec<Event>> {
        PagedScheduler::step(self)
    }

    fn cancel(&mut self, id: u64) -> Result<bool> {
        PagedScheduler::cancel(self, id)
    }

    fn running(&self) -> usize {
        PagedScheduler::running(self)
    }

    fn waiting(&self) -> usize {
        PagedScheduler::waiting(self)
    }

    fn is_idle(&self) -> bool {
        PagedScheduler::is_idle(self)
    }

    fn cache_bytes(&self) -> usize {
        PagedScheduler::cache_bytes(self)
    }

    fn cached_tokens(&self, id: u64) -> usize {
        PagedScheduler::cached_tokens(self, id).unwrap_or(0)
    }

    fn kv_pool(&self) -> Option<KvPoolStats> {
        let pool = self.cache.pool();
        let stats = self.cache.stats();
        Some(KvPoolStats {
            blocks_total: pool.num_blocks(),
            blocks_used: pool.num_used() - self.cache.num_evictable(),
            blocks_evictable: self.cache.num_evictable(),
            prefix_hit_tokens: stats.hit_tokens,
            prefix_miss_tokens: stats.miss_tokens,
            evictions: stats.evictions,
            preemptions: self.preemptions,
        })
    }

    fn speculation(&self) -> Option<SpeculationCounts> {
        self.speculator.as_ref().map(|_| self.speculation)
    }
}
