//! Reference solution of week 2, chapter 10: a KV cache holding several sequences at different
//! positions, and a scheduler that batches requests as they come and go.
mod batch_cache;
mod scheduler;
pub use batch_cache::*;
pub use scheduler::*;
