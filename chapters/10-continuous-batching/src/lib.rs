//! Week 2, chapter 10: continuous batching. Your code goes in `src/batch_cache.rs` (adding and
//! removing the rows of a KV cache for a batch of sequences at different positions, writing
//! their new tokens and masking them) and `src/scheduler.rs` (prefilling requests in chunks,
//! decoding them together, cancelling them). Given: `src/batch_cache_storage.rs` (the batched
//! cache's type and layout), `src/request.rs` (requests, their events and finish reasons),
//! `src/logprobs.rs` (the log-probabilities a request may ask for with its tokens),
//! `src/scheduler_queues.rs` (the scheduler's type, its queues and its step) and `src/batcher.rs`
//! (what a server asks of a scheduler). The tests are in `tests/continuous_batching/`. Book: book/src/week2-10-continuous-batching.md.
//!
//! With the `solution` feature each file you write is swapped for its reference twin in
//! `solutions/continuous-batching/src/` (same name, same public API); the given files stay as they are.

// The stubs ignore their arguments until you fill them in (clippy would meanwhile suggest a
// slice for the event lists they are to push to); each file already imports what you need.
#[cfg_attr(
    feature = "solution",
    path = "../../../solutions/continuous-batching/src/batch_cache.rs"
)]
#[cfg_attr(
    not(feature = "solution"),
    allow(unused_variables, unused_imports, dead_code)
)]
mod batch_cache;
// Until your code uses them, the helpers the given files keep for it are unused.
#[cfg_attr(not(feature = "solution"), allow(dead_code))]
mod batch_cache_storage;
mod batcher;
mod constraint;
mod logprobs;
mod request;
#[cfg_attr(
    feature = "solution",
    path = "../../../solutions/continuous-batching/src/scheduler.rs"
)]
#[cfg_attr(
    not(feature = "solution"),
    allow(unused_variables, unused_imports, dead_code, clippy::ptr_arg)
)]
mod scheduler;
#[cfg_attr(not(feature = "solution"), allow(dead_code))]
mod scheduler_queues;
// What the tests use alongside the scheduler, from the chapters it builds on.
pub use {
    batch_cache_storage::*,
    batcher::*,
    constraint::*,
    kv_cache::{
        generate, greedy, CachedModel, DenseLoader, GenerationOptions, Kernels, KvCache,
        LayerCache, Model, ModelConfig, Tokenizer, STEP,
    },
    logprobs::*,
    request::*,
    rope::Offset,
    sampling::{Sampler, SamplingParams},
    scheduler_queues::*,
};
