//! Week 2, chapter 10: continuous batching. Your code goes in `src/batch_cache.rs` (a KV cache
//! for a batch of sequences at different positions) and `src/scheduler.rs` (prefilling requests
//! in chunks, decoding them together, cancelling them); the rest of each file is given. The tests
//! are in `tests/continuous_batching.rs`. Book: book/src/week2-10-continuous-batching.md.
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
#[cfg_attr(
    feature = "solution",
    path = "../../../solutions/continuous-batching/src/scheduler.rs"
)]
#[cfg_attr(
    not(feature = "solution"),
    allow(unused_variables, unused_imports, dead_code, clippy::ptr_arg)
)]
mod scheduler;
// What the tests use alongside the scheduler, from the chapters it builds on.
pub use {
    batch_cache::*,
    kv_cache::{
        generate, greedy, CachedModel, DenseLoader, GenerationOptions, Kernels, KvCache,
        LayerCache, Model, ModelConfig, Tokenizer, STEP,
    },
    rope::Offset,
    sampling::{Sampler, SamplingParams},
    scheduler::*,
};
