//! Week 3, chapter 15: constrained decoding. Your code goes in `src/mask.rs` (a bitmask of
//! allowed tokens unpacked and applied to the logits, as MLX ops), `src/constraint.rs` (a
//! grammar's state as the mask of the next token, advanced by each chosen token), `src/generate.rs`
//! (generation under a constraint) and `src/batch.rs` (one masked sampling step over a batch whose
//! rows may or may not be constrained). Given: `src/grammar.rs` (`Grammar`, which compiles a JSON
//! schema, JSON object, regex or Lark grammar with llguidance over a tokenizer's vocabulary, and
//! `GrammarState`, the library's matcher) and `src/scheduler_hook.rs` (your `Constraint` as chapter
//! 10's `TokenConstraint`, which its schedulers and the server apply). The tests are in `tests/constrained_decoding/`.
//! Book: book/src/week3-15-constrained-decoding.md.
//!
//! With the `solution` feature each file you write is swapped for its reference twin in
//! `solutions/constrained-decoding/src/` (same name, same public API); the given files stay as
//! they are.

// The files you write. The stubs ignore their arguments until you fill them in; each file
// already imports what you need.
#[cfg_attr(
    feature = "solution",
    path = "../../../solutions/constrained-decoding/src/batch.rs"
)]
#[cfg_attr(
    not(feature = "solution"),
    allow(unused_variables, unused_imports, dead_code)
)]
mod batch;
#[cfg_attr(
    feature = "solution",
    path = "../../../solutions/constrained-decoding/src/constraint.rs"
)]
#[cfg_attr(
    not(feature = "solution"),
    allow(unused_variables, unused_imports, dead_code)
)]
mod constraint;
#[cfg_attr(
    feature = "solution",
    path = "../../../solutions/constrained-decoding/src/generate.rs"
)]
#[cfg_attr(
    not(feature = "solution"),
    allow(unused_variables, unused_imports, dead_code)
)]
mod generate;
#[cfg_attr(
    feature = "solution",
    path = "../../../solutions/constrained-decoding/src/mask.rs"
)]
#[cfg_attr(
    not(feature = "solution"),
    allow(unused_variables, unused_imports, dead_code)
)]
mod mask;

// Given.
mod grammar;
mod scheduler_hook;

pub use {batch::*, constraint::*, generate::*, grammar::*, mask::*};
// What the tests use alongside constraints, from the chapters it builds on.
pub use {
    continuous_batching::{
        Event, FinishReason, Request, Scheduler, SchedulerConfig, SharedConstraint, TokenConstraint,
    },
    kv_cache::{generate, greedy, CachedModel, GenerationOptions, LanguageModel, Model, Tokenizer},
    sampling::{Sampler, SamplingParams},
};
