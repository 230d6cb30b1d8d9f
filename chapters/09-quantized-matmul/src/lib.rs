//! Week 2, chapter 9: quantized matmul. Your code goes in `src/quantize.rs` (dequantizing and
//! multiplying with array ops), `src/quantized_linear.rs` (the quantized linear layer) and
//! `src/loader.rs` (making each layer as a model loads); the rest of each file is given. The
//! tests are in `tests/quantized_matmul.rs`. Book: book/src/week2-09-quantized-matmul.md.
//!
//! With the `solution` feature each file you write is swapped for its reference twin in
//! `solutions/quantized-matmul/src/` (same name, same public API); the given files stay as they are.

// The stubs ignore their arguments until you fill them in; each file already imports what you need.
#[cfg_attr(
    feature = "solution",
    path = "../../../solutions/quantized-matmul/src/loader.rs"
)]
#[cfg_attr(
    not(feature = "solution"),
    allow(unused_variables, unused_imports, dead_code)
)]
mod loader;
#[cfg_attr(
    feature = "solution",
    path = "../../../solutions/quantized-matmul/src/quantize.rs"
)]
#[cfg_attr(
    not(feature = "solution"),
    allow(unused_variables, unused_imports, dead_code)
)]
mod quantize;
#[cfg_attr(
    feature = "solution",
    path = "../../../solutions/quantized-matmul/src/quantized_linear.rs"
)]
#[cfg_attr(
    not(feature = "solution"),
    allow(unused_variables, unused_imports, dead_code)
)]
mod quantized_linear;
// What the tests use alongside the quantized model, from the chapters it builds on.
pub use {
    kv_cache::{
        generate, greedy, CachedModel, GenerationOptions, Linear, LoadError, Model, Tokenizer,
    },
    loader::*,
    quantize::*,
    quantized_linear::*,
};
