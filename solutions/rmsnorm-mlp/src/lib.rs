//! Reference solution of week 1, chapter 4: RMSNorm, the MLP and the transformer block.
mod block;
mod mlp;
mod rmsnorm;
pub use block::*;
pub use gqa_solution::{Attention, AttentionConfig, AttentionWeights, Mask, Offset};
pub use mlp::*;
pub use rmsnorm::*;
