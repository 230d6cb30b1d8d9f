//! The paged scheduler's admission and preemption (its type, queues and step are in
//! `src/paged_scheduler_queues.rs`): requests start when the pool has their blocks, from
//! whatever the prefix cache holds of their prompt, and the newest give their blocks back when
//! the running ones need more.

use crate::{
    paged_scheduler_queues::{paged_error, pool_error, target, Running},
    PagedScheduler,
};
use continuous_batching::{Event, FinishReason};
use mlx_rs::error::Result;
use paged_kv_cache::blocks_for;

impl PagedScheduler<'_> {
    /// Starts waiting requests, first come first served, while fewer than `max_running` run
    /// and the pool can hold them.
    ///
    /// - A request with `max_new_tokens == 0` (and nothing chosen yet) finishes at once
    ///   (`Finished`, `Length`).
    /// - Its table starts with the prefix cache's blocks for its tokens
    ///   ([`PrefixCache::lookup`](crate::PrefixCache::lookup)) when prefix caching is on, else
    ///   empty.
    /// - It is admitted when the cache has the blocks its first [`target`] tokens still need
    ///   plus one to spare (for the copy of a shared block, or its first decoded token);
    ///   otherwise its blocks are released and admission stops (the queue keeps its order).
    /// - Admitted: reserve its tokens up to the target, make its next block writable
    ///   ([`PrefixCache::make_writable`](crate::PrefixCache::make_writable)), count the lookup
    ///   ([`PrefixCache::record_lookup`](crate::PrefixCache::record_lookup): its prompt, the
    ///   table's length) and push it to `running` with that length as `cached_tokens`.
    ///
    /// Book: week 3, chapter 13 (prefix cache), task 4.
    pub(crate) fn admit(&mut self, events: &mut Vec<Event>) -> Result<()> {
        while self.running.len() < self.config.scheduler.max_running {
            let Some(next) = self.waiting.front() else {
                break;
            };
            if next.generated == 0 && next.request.max_new_tokens == 0 {
                let request = self.waiting.pop_front().expect("front").request;
                events.push(Event::Finished {
                    id: request.id,
                    reason: FinishReason::Length,
                });
                continue;
            }
            let target = target(next);
            let mut table = if self.config.prefix_caching {
                self.cache.lookup(&next.tokens)
            } else {
                Default::default()
            };
            let needed = blocks_for(target).saturating_sub(table.blocks().len()) + 1;
            if needed > self.cache.available() {
                self.cache.release(table).map_err(pool_error)?;
                break;
            }
            let decoding = self.waiting.pop_front().expect("front");
            let cached_tokens = table.len();
            self.cache
                .reserve(&mut table, target - cached_tokens)
                .map_err(pool_error)?;
            self.cache.make_writable(&mut table).map_err(paged_error)?;
            self.cache
                .record_lookup(decoding.request.prompt.len(), cached_tokens);
            self.running.push(Running {
                decoding,
                table,
                cached_tokens,
            });
        }
        Ok(())
    }

    /// Before a decode step: every decoding request whose table is full needs one more block.
    /// While the cache has fewer available than that, preempt the most recently admitted
    /// request: release its blocks and put it back at the front of the queue with the tokens it
    /// has chosen (it recomputes them when admitted again). The last running request is never
    /// preempted: if even it cannot grow, the pool is its context limit and it finishes
    /// (`Finished`, `Length`).
    ///
    /// Book: week 3, chapter 13 (prefix cache), task 4.
    pub(crate) fn make_room(&mut self, events: &mut Vec<Event>) -> Result<()> {
        loop {
            let needed = self
                .running
                .iter()
                .filter(|running| {
                    running.is_decoding() && running.table.len() == running.table.capacity()
                })
                .count();
            if needed <= self.cache.available() {
                return Ok(());
            }
            let newest = self.running.len() - 1;
            let decoding = self.finish(newest)?;
            if self.running.is_empty() {
                events.push(Event::Finished {
                    id: decoding.request.id,
                    reason: FinishReason::Length,
                });
                return Ok(());
            }
            self.preemptions += 1;
            self.waiting.push_front(decoding);
        }
    }
}
