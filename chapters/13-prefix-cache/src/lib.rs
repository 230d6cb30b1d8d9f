//! Week 3, chapter 13: a prefix cache. Your code goes in `src/prefix_cache.rs` (hashing blocks
//! with their prefix, finding a prompt's cached blocks, registering full blocks, counting
//! references, evicting the least recently used), `src/copy_on_write.rs` (a private copy of a
//! shared block before writing into it) and `src/paged_scheduler.rs` (admitting requests by free
//! blocks, preempting when the pool runs out). Given: `src/prefix_cache_storage.rs` (the
//! `PrefixCache` type and its statistics), `src/paged_scheduler_queues.rs` (the
//! `PagedScheduler` type, its queues and its step) and `src/speculation_hook.rs` (how chapter
//! 14's speculative decoding runs in its decode step). The tests are in `tests/prefix_cache/`.
//! Book: book/src/week3-13-prefix-cache.md.
//!
//! With the `solution` feature each file you write is swapped for its reference twin in
//! `solutions/prefix-cache/src/` (same name, same public API); the given files stay as they are.

// The files you write. The stubs ignore their arguments until you fill them in; each file
// already imports what you need.
#[cfg_attr(
    feature = "solution",
    path = "../../../solutions/prefix-cache/src/copy_on_write.rs"
)]
#[cfg_attr(
    not(feature = "solution"),
    allow(unused_variables, unused_imports, dead_code)
)]
mod copy_on_write;
#[cfg_attr(
    feature = "solution",
    path = "../../../solutions/prefix-cache/src/paged_scheduler.rs"
)]
// Until you fill them in, clippy would suggest a slice for the event lists they push to.
#[cfg_attr(
    not(feature = "solution"),
    allow(unused_variables, unused_imports, dead_code, clippy::ptr_arg)
)]
mod paged_scheduler;
#[cfg_attr(
    feature = "solution",
    path = "../../../solutions/prefix-cache/src/prefix_cache.rs"
)]
#[cfg_attr(
    not(feature = "solution"),
    allow(unused_variables, unused_imports, dead_code)
)]
mod prefix_cache;

// Given. What only your code reads (a field, a method) is unused until you write that code.
#[cfg_attr(not(feature = "solution"), allow(dead_code))]
mod paged_scheduler_queues;
#[cfg_attr(not(feature = "solution"), allow(dead_code))]
mod prefix_cache_storage;
mod speculation_hook;

pub use {
    paged_scheduler_queues::*, prefix_cache::block_hash, prefix_cache_storage::*,
    speculation_hook::*,
};
// What the tests use alongside the prefix cache, from the chapters it builds on.
pub use {
    continuous_batching::{
        Batcher, Decoding, Event, FinishReason, Request, SamplingParams, Scheduler,
        SchedulerConfig, SpeculationCounts,
    },
    kv_cache::{generate, greedy, CachedModel, GenerationOptions, Model, Tokenizer},
    paged_kv_cache::{BlockTable, PagePool, PoolError, BLOCK_SIZE},
};
