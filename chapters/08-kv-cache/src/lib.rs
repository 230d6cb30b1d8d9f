//! Week 2, chapter 8: the KV cache. Your code goes in `src/cache.rs` (the cache),
//! `src/attention.rs` (attention that reads and fills it), `src/model.rs` (the model's forward
//! pass over new tokens) and `src/generate.rs` (generation with one prefill); `src/linear.rs`,
//! `src/layer_cache.rs`, `src/kernels.rs` and the rest of each file are given. The tests are in
//! `tests/kv_cache.rs`. Book: book/src/week2-08-kv-cache.md.
//!
//! With the `solution` feature each file you write is swapped for its reference twin in
//! `solutions/kv-cache/src/` (same name, same public API); the given files stay as they are.

// The stubs ignore their arguments until you fill them in; each file already imports what you need.
#[cfg_attr(
    feature = "solution",
    path = "../../../solutions/kv-cache/src/attention.rs"
)]
#[cfg_attr(
    not(feature = "solution"),
    allow(unused_variables, unused_imports, dead_code)
)]
mod attention;
#[cfg_attr(
    feature = "solution",
    path = "../../../solutions/kv-cache/src/cache.rs"
)]
#[cfg_attr(
    not(feature = "solution"),
    allow(unused_variables, unused_imports, dead_code)
)]
mod cache;
#[cfg_attr(
    feature = "solution",
    path = "../../../solutions/kv-cache/src/generate.rs"
)]
#[cfg_attr(
    not(feature = "solution"),
    allow(unused_variables, unused_imports, dead_code)
)]
mod generate;
mod kernels;
mod layer_cache;
mod linear;
#[cfg_attr(
    feature = "solution",
    path = "../../../solutions/kv-cache/src/model.rs"
)]
#[cfg_attr(
    not(feature = "solution"),
    allow(unused_variables, unused_imports, dead_code)
)]
mod model;
// What the tests and later chapters use alongside the cached model, from the chapters it builds on.
pub use {
    attention::*,
    cache::*,
    decode::{generate, greedy, DecodeError, GenerationOptions, LanguageModel, Tokenizer},
    generate::*,
    kernels::*,
    layer_cache::*,
    linear::*,
    load::{LoadError, ModelConfig},
    model::*,
    rmsnorm_mlp::AttentionConfig,
};
