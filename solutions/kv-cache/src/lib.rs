//! Reference solution of week 2, chapter 8: the KV cache, the model that uses it, and generation
//! with one prefill.
mod attention;
mod cache;
mod generate;
mod kernels;
mod layer_cache;
mod linear;
mod model;
pub use attention::*;
pub use cache::*;
pub use generate::*;
pub use kernels::*;
pub use layer_cache::*;
pub use linear::*;
pub use model::*;
// What the tests and later chapters use alongside the cached model, from the chapters it builds on.
pub use decode_solution::{
    generate, greedy, DecodeError, GenerationOptions, LanguageModel, Tokenizer,
};
pub use load_solution::{LoadError, ModelConfig};
pub use rmsnorm_mlp_solution::AttentionConfig;
