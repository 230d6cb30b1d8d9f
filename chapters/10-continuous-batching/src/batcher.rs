//! What a server's engine thread asks of a scheduler: the [`Batcher`] trait, which this chapter's
//! [`Scheduler`] implements, and chapter 13's paged scheduler too. Given.

use crate::{Event, Request, Scheduler};
use mlx_rs::error::Result;

/// The state of a paged KV pool and its prefix cache (chapter 13), for `/metrics`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KvPoolStats {
    pub blocks_total: usize,
    /// Blocks some request holds.
    pub blocks_used: usize,
    /// Blocks no request holds, kept for their content until the memory is needed.
    pub blocks_evictable: usize,
    /// Prompt tokens found in the prefix cache, and those computed, since the start.
    pub prefix_hit_tokens: usize,
    pub prefix_miss_tokens: usize,
    /// Cached blocks reused for other content, and requests preempted, since the start.
    pub evictions: usize,
    pub preemptions: usize,
}

/// What speculative decoding (chapter 14) achieved in a scheduler's decode steps, since the
/// start, for `/metrics`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SpeculationCounts {
    /// Rows decoded, one per request per target forward (with or without a draft).
    pub row_steps: usize,
    /// Draft tokens verified, and those accepted.
    pub drafted: usize,
    pub accepted: usize,
}

impl SpeculationCounts {
    /// Accepted over drafted tokens; `None` before any was drafted.
    pub fn acceptance_rate(&self) -> Option<f64> {
        (self.drafted > 0).then(|| self.accepted as f64 / self.drafted as f64)
    }

    /// Tokens a row gains per target forward: 1 without speculation, up to `k + 1`.
    pub fn tokens_per_row_step(&self) -> Option<f64> {
        (self.row_steps > 0)
            .then(|| (self.row_steps + self.accepted) as f64 / self.row_steps as f64)
    }
}

/// Continuous batching as the engine thread drives it: requests in, one step at a time, events
/// out.
pub trait Batcher {
    /// Queues a request; fails on a request the scheduler cannot run.
    fn add(&mut self, request: Request) -> Result<()>;
    /// One step of every running request; the events in order.
    fn step(&mut self) -> Result<Vec<Event>>;
    /// Removes request `id` wherever it is; `false` when unknown.
    fn cancel(&mut self, id: u64) -> Result<bool>;
    fn running(&self) -> usize;
    fn waiting(&self) -> usize;
    fn is_idle(&self) -> bool;
    /// The bytes of every KV cache the scheduler holds.
    fn cache_bytes(&self) -> usize;
    /// The prompt tokens of running request `id` that a prefix cache held; 0 without one.
    fn cached_tokens(&self, _id: u64) -> usize {
        0
    }
    /// The paged pool's state; `None` for dense caches.
    fn kv_pool(&self) -> Option<KvPoolStats> {
        None
    }
    /// What speculative decoding achieved; `None` when the scheduler does not speculate.
    fn speculation(&self) -> Option<SpeculationCounts> {
        None
    }
}

impl Batcher for Scheduler<'_> {
    fn add(&mut self, request: Request) -> Result<()> {
        Scheduler::add(self, request)
    }

    fn step(&mut self) -> Result<Vec<Event>> {
        Scheduler::step(self)
    }

    fn cancel(&mut self, id: u64) -> Result<bool> {
        Scheduler::cancel(self, id)
    }

    fn running(&self) -> usize {
        Scheduler::running(self)
    }

    fn waiting(&self) -> usize {
        Scheduler::waiting(self)
    }

    fn is_idle(&self) -> bool {
        Scheduler::is_idle(self)
    }

    fn cache_bytes(&self) -> usize {
        Scheduler::cache_bytes(self)
    }
}
