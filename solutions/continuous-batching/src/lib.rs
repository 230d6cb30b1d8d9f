//! Reference solution of week 2, chapter 10: a KV cache holding several sequences at different
//! positions, and a scheduler that batches requests as they come and go.
mod batch_cache;
mod scheduler;
pub use batch_cache::*;
pub use scheduler::*;
// What the tests use alongside the scheduler, from the chapters it builds on.
pub use kv_cache_solution::{
    generate, greedy, CachedModel, DenseLoader, GenerationOptions, Kernels, KvCache, LayerCache,
    Model, ModelConfig, Tokenizer, STEP,
};
pub use rope_solution::Offset;
pub use sampling_solution::{Sampler, SamplingParams};
