//! Week 2, chapter 10: continuous batching. Your code goes in `src/batch_cache.rs` (a KV cache
//! for a batch of sequences at different positions) and `src/scheduler.rs` (prefilling requests
//! in chunks, decoding them together, cancelling them); the rest of each file is given. The tests
//! are in `tests/continuous_batching.rs`. Book: book/src/week2-10-continuous-batching.md.
//!
//! With the `solution` feature this crate exposes the reference solution instead.

// The stubs ignore their arguments until you fill them in (clippy would meanwhile suggest a
// slice for the event lists they are to push to); each file already imports what you need.
#[cfg(not(feature = "solution"))]
#[allow(unused_variables, unused_imports, dead_code)]
mod batch_cache;
#[cfg(not(feature = "solution"))]
#[allow(unused_variables, unused_imports, dead_code, clippy::ptr_arg)]
mod scheduler;
// What the tests use alongside the scheduler, from the chapters it builds on.
#[cfg(not(feature = "solution"))]
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

#[cfg(feature = "solution")]
pub use continuous_batching_solution::*;
