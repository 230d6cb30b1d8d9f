//! Week 2, chapter 11: serving. Your code goes in `src/engine.rs` (admitting requests, and
//! routing each generated token to its client) and `src/server.rs` (the completions endpoint,
//! streaming as server-sent events, errors in OpenAI's shape). Given: `src/engine_thread.rs`
//! (the engine thread, its handle and its loop), `src/messages.rs` (what handlers and the engine
//! thread exchange), `src/routes.rs` (the router and the endpoints given whole),
//! `src/app_state.rs` (what every handler shares), `src/native_api.rs` (`/generate`),
//! `src/errors.rs` (`ApiError`), `src/protocol.rs` (the JSON types), `src/tools.rs` (OpenAI's
//! tools through constrained decoding), `src/metrics.rs`, and
//! `src/guard.rs` and `src/listen.rs` (limits, authentication, connections). The tests are in
//! `tests/serving/`. Book: book/src/week2-11-serving.md.
//!
//! With the `solution` feature each file you write is swapped for its reference twin in
//! `solutions/serving/src/` (same name, same public API); the given files stay as they are.

mod app_state;
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
// Until your code uses them, the helpers the given files keep for it are unused.
#[cfg_attr(not(feature = "solution"), allow(dead_code))]
mod engine_thread;
#[cfg_attr(not(feature = "solution"), allow(dead_code))]
mod errors;
mod guard;
mod listen;
#[cfg_attr(not(feature = "solution"), allow(dead_code))]
mod messages;
mod metrics;
mod native_api;
mod protocol;
mod routes;
#[cfg_attr(
    feature = "solution",
    path = "../../../solutions/serving/src/server.rs"
)]
#[cfg_attr(
    not(feature = "solution"),
    allow(unused_variables, unused_imports, dead_code)
)]
mod server;
mod tools;
// What the tests use alongside the server, from the chapters it builds on.
pub use {
    app_state::*,
    continuous_batching::{FinishReason, Model, SamplingParams, SchedulerConfig},
    decode::{ChatTemplate, ContextPolicy, Tokenizer},
    engine_thread::*,
    errors::*,
    guard::*,
    listen::*,
    messages::*,
    metrics::*,
    protocol::*,
    routes::*,
    tools::*,
};
