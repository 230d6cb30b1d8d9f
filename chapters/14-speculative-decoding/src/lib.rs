//! Week 3, chapter 14: speculative decoding. Your code goes in `src/ngram.rs` (prompt lookup,
//! the drafter without a model), `src/verify.rs` (greedy verification), `src/rejection.rs` (the
//! rejection rule that keeps the target's distribution), `src/model_drafter.rs` (a draft model
//! over its own cache) and `src/speculative.rs` (the loop: draft, verify in one pass, rewind).
//! Given: `src/draft.rs` (the `Drafter` trait, `Draft`, the n-gram drafter, the errors),
//! `src/batch_speculator.rs` (your drafters and verification in the server's batches),
//! `src/draft_model.rs` (the `ModelDrafter` type), `src/distribution.rs` (the sampler's
//! distribution, row by row), `src/output.rs` (EOS, stop strings and streaming, a token at a
//! time) and `src/speculation.rs` (options, verdict, statistics). The tests are in
//! `tests/speculative_decoding/`. Book: book/src/week3-14-speculative-decoding.md.
//!
//! With the `solution` feature each file you write is swapped for its reference twin in
//! `solutions/speculative-decoding/src/` (same name, same public API); the given files stay as
//! they are.

// The files you write. The stubs ignore their arguments until you fill them in; each file
// already imports what you need.
#[cfg_attr(
    feature = "solution",
    path = "../../../solutions/speculative-decoding/src/model_drafter.rs"
)]
#[cfg_attr(
    not(feature = "solution"),
    allow(unused_variables, unused_imports, dead_code)
)]
mod model_drafter;
#[cfg_attr(
    feature = "solution",
    path = "../../../solutions/speculative-decoding/src/ngram.rs"
)]
#[cfg_attr(
    not(feature = "solution"),
    allow(unused_variables, unused_imports, dead_code)
)]
mod ngram;
#[cfg_attr(
    feature = "solution",
    path = "../../../solutions/speculative-decoding/src/rejection.rs"
)]
#[cfg_attr(
    not(feature = "solution"),
    allow(unused_variables, unused_imports, dead_code)
)]
mod rejection;
#[cfg_attr(
    feature = "solution",
    path = "../../../solutions/speculative-decoding/src/speculative.rs"
)]
#[cfg_attr(
    not(feature = "solution"),
    allow(unused_variables, unused_imports, dead_code)
)]
mod speculative;
#[cfg_attr(
    feature = "solution",
    path = "../../../solutions/speculative-decoding/src/verify.rs"
)]
#[cfg_attr(
    not(feature = "solution"),
    allow(unused_variables, unused_imports, dead_code)
)]
mod verify;

// Given. What only your code reads (a field, a method) is unused until you write that code.
mod batch_speculator;
#[cfg_attr(not(feature = "solution"), allow(dead_code))]
mod distribution;
mod draft;
#[cfg_attr(not(feature = "solution"), allow(dead_code))]
mod draft_model;
#[cfg_attr(not(feature = "solution"), allow(dead_code))]
mod output;
mod speculation;

pub use {
    batch_speculator::*, distribution::*, draft::*, draft_model::*, ngram::*, output::*,
    rejection::*, speculation::*, speculative::*, verify::*,
};
// What the tests and the engine use alongside speculation, from the chapters it builds on.
pub use {
    continuous_batching::{
        Batcher, Event, FinishReason, Request, SchedulerConfig, SharedConstraint, TokenConstraint,
    },
    decode::{
        generate, greedy, Generation, GenerationOptions, LanguageModel, StopReason, Tokenizer,
    },
    kv_cache::{CachedModel, KvCache, Model, STEP},
    prefix_cache::{PagedConfig, PagedScheduler, BLOCK_SIZE},
    quantized_matmul::{load_model, Kernel, Quantization},
    sampling::{Sampler, SamplingParams},
};
