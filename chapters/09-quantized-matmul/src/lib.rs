//! Week 2, chapter 9: quantized matmul. Your code goes in `src/quantize.rs` (dequantizing and
//! multiplying with array ops), `src/quantized_linear.rs` (the quantized linear layer) and
//! `src/loader.rs` (making each layer as a model loads). Given: `src/packed_layout.rs` (checking
//! a packed weight), `src/quantized_kernel.rs` (`Kernel`), `src/quantized_weights.rs` (what a
//! `QuantizedLinear` holds, and making one), `src/quantization.rs` (`Quantization` and the
//! `QuantizedLoader`'s settings) and `src/quantized_model.rs` (`load_model`, `weight_bytes`). The
//! tests are in `tests/quantized_matmul/`. Book: book/src/week2-09-quantized-matmul.md.
//!
//! With the `solution` feature each file you write is swapped for its reference twin in
//! `solutions/quantized-matmul/src/` (same name, same public API); the given files stay as they are.

// The files you write. The stubs ignore their arguments until you fill them in; each file
// already imports what you need.
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

// Given. What only your code reads (a field, a helper) is unused until you write that code.
#[cfg_attr(not(feature = "solution"), allow(dead_code))]
mod packed_layout;
#[cfg_attr(not(feature = "solution"), allow(dead_code))]
mod quantization;
mod quantized_kernel;
mod quantized_model;
#[cfg_attr(not(feature = "solution"), allow(dead_code))]
mod quantized_weights;

// What the tests use alongside the quantized model, from the chapters it builds on.
pub use {
    kv_cache::{
        generate, greedy, CachedModel, GenerationOptions, Linear, LoadError, Model, Tokenizer,
    },
    quantization::*,
    quantize::*,
    quantized_kernel::*,
    quantized_model::*,
    quantized_weights::*,
};
