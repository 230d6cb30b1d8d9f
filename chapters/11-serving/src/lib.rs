//! Week 2, chapter 11: serving. Your code goes in `src/engine.rs` (admitting requests, and
//! routing each generated token to its client) and `src/server.rs` (the completions endpoint,
//! streaming as server-sent events, errors in OpenAI's shape); `src/protocol.rs`,
//! `src/metrics.rs` and the rest of each file are given. The tests are in `tests/serving.rs`.
//! Book: book/src/week2-11-serving.md.
//!
//! With the `solution` feature each file you write is swapped for its reference twin in
//! `solutions/serving/src/` (same name, same public API); the given files stay as they are.

// The stubs ignore their arguments until you fill them in; each file already imports what you need.
#[cfg_attr(
    feature = "solution",
    path = "../../../solutions/serving/src/engine.rs"
)]
#[cfg_attr(
    not(feature = "solution"),
    allow(unused_variables, unused_imports, dead_code)
)]
mod engine;
mod guard;
mod listen;
mod metrics;
mod protocol;
#[cfg_attr(
    feature = "solution",
    path = "../../../solutions/serving/src/server.rs"
)]
#[cfg_attr(
    not(feature = "solution"),
    allow(unused_variables, unused_imports, dead_code)
)]
mod server;
// What the tests use alongside the server, from the chapters it builds on.
pub use {
    continuous_batching::{FinishReason, Model, SamplingParams, SchedulerConfig},
    decode::{ContextPolicy, Tokenizer},
    engine::*,
    guard::*,
    listen::*,
    metrics::*,
    protocol::*,
    server::*,
};
