//! Week 1, chapter 4: RMSNorm, the MLP and the transformer block. Your code goes in
//! `src/rmsnorm.rs`, `src/mlp.rs` and `src/block.rs`; the tests are in `tests/rmsnorm_mlp.rs`.
//! Book: book/src/week1-04-rmsnorm-mlp.md.
//!
//! With the `solution` feature this crate exposes the reference solution instead.

// The stubs ignore their arguments until you fill them in.
#[cfg(not(feature = "solution"))]
#[allow(unused_variables)]
mod block;
#[cfg(not(feature = "solution"))]
#[allow(unused_variables)]
mod mlp;
#[cfg(not(feature = "solution"))]
#[allow(unused_variables)]
mod rmsnorm;
#[cfg(not(feature = "solution"))]
pub use block::*;
#[cfg(not(feature = "solution"))]
pub use gqa::{Attention, AttentionConfig, AttentionWeights, Mask, Offset};
#[cfg(not(feature = "solution"))]
pub use mlp::*;
#[cfg(not(feature = "solution"))]
pub use rmsnorm::*;

#[cfg(feature = "solution")]
pub use rmsnorm_mlp_solution::*;
