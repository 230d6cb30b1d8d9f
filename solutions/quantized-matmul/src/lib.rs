//! Reference solution of week 2, chapter 9: affine quantization, a quantized matmul from array
//! ops, quantized linear layers, and loading (or quantizing) a model with them.
mod loader;
mod quantize;
mod quantized_linear;
pub use loader::*;
pub use quantize::*;
pub use quantized_linear::*;
// What the tests use alongside the quantized model, from the chapters it builds on.
pub use kv_cache_solution::{
    generate, greedy, CachedModel, GenerationOptions, Linear, LoadError, Model, Tokenizer,
};
