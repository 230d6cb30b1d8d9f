//! Week 2, chapter 8: the KV cache. Your code goes in `src/cache.rs` (filling and rewinding the
//! cache), `src/attention.rs` (attention that reads and fills it), `src/model.rs` (the model's
//! forward pass over new tokens) and `src/generate.rs` (generation with one prefill). Given: the
//! types your code works on, `src/cache_storage.rs` (`KvCache`), `src/attention_layers.rs`
//! (`CachedAttention`), `src/model_weights.rs` (`Model` and its loading), `src/block.rs` (a
//! decoder layer) and `src/cached_model.rs` (`CachedModel`); and `src/fused_attention.rs`,
//! `src/kernels.rs`, `src/linear.rs`, `src/linear_loader.rs`, `src/tensors.rs`,
//! `src/layer_cache.rs` and `src/rope_scaling.rs`. The tests are in `tests/kv_cache/`. Book: book/src/week2-08-kv-cache.md.
//!
//! With the `solution` feature each file you write is swapped for its reference twin in
//! `solutions/kv-cache/src/` (same name, same public API); the given files stay as they are.

// The files you write. The stubs ignore their arguments until you fill them in; each file
// already imports what you need.
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
#[cfg_attr(
    feature = "solution",
    path = "../../../solutions/kv-cache/src/model.rs"
)]
#[cfg_attr(
    not(feature = "solution"),
    allow(unused_variables, unused_imports, dead_code)
)]
mod model;

// Given. What only your code reads (a field, a method) is unused until you write that code.
#[cfg_attr(not(feature = "solution"), allow(dead_code))]
mod attention_layers;
#[cfg_attr(not(feature = "solution"), allow(dead_code))]
mod block;
mod cache_storage;
#[cfg_attr(not(feature = "solution"), allow(dead_code))]
mod cached_model;
mod fused_attention;
mod kernels;
mod layer_cache;
mod linear;
mod linear_loader;
mod model_weights;
mod rope_scaling;
mod tensors;

// What the tests and later chapters use alongside the cached model, from the chapters it builds on.
pub use {
    attention_layers::*,
    cache_storage::*,
    cached_model::*,
    decode::{generate, greedy, DecodeError, GenerationOptions, LanguageModel, Tokenizer},
    kernels::*,
    layer_cache::*,
    linear::*,
    linear_loader::*,
    load::{LoadError, ModelConfig},
    model_weights::*,
    rmsnorm_mlp::AttentionConfig,
    rope_scaling::*,
    tensors::*,
};
