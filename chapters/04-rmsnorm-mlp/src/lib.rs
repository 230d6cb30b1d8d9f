//! Week 1, chapter 4: RMSNorm, the MLP and the transformer block. Your code goes in
//! `src/rmsnorm.rs`, `src/mlp.rs` and `src/block.rs`; the tests are in `tests/rmsnorm_mlp.rs`.
//! Book: book/src/week1-04-rmsnorm-mlp.md.
//!
//! With the `solution` feature each file you write is swapped for its reference twin in
//! `solutions/rmsnorm-mlp/src/` (same name, same public API); the given files stay as they are.

// The stubs ignore their arguments until you fill them in.
#[cfg_attr(
    feature = "solution",
    path = "../../../solutions/rmsnorm-mlp/src/block.rs"
)]
#[cfg_attr(not(feature = "solution"), allow(unused_variables))]
mod block;
#[cfg_attr(
    feature = "solution",
    path = "../../../solutions/rmsnorm-mlp/src/mlp.rs"
)]
#[cfg_attr(not(feature = "solution"), allow(unused_variables))]
mod mlp;
#[cfg_attr(
    feature = "solution",
    path = "../../../solutions/rmsnorm-mlp/src/rmsnorm.rs"
)]
#[cfg_attr(not(feature = "solution"), allow(unused_variables))]
mod rmsnorm;
pub use block::*;
pub use gqa::{Attention, AttentionConfig, AttentionWeights, Mask, Offset};
pub use mlp::*;
pub use rmsnorm::*;
