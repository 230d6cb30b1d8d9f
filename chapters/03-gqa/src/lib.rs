//! Week 1, chapter 3: grouped-query attention. Your code goes in `src/gqa.rs` (masks and
//! attention with shared key/value heads) and `src/self_attention.rs` (the model's attention
//! layer); the tests are in `tests/gqa.rs`. Book: book/src/week1-03-gqa.md.
//!
//! With the `solution` feature this crate exposes the reference solution instead.

// The stubs ignore their arguments until you fill them in.
#[cfg(not(feature = "solution"))]
#[allow(unused_variables)]
mod gqa;
#[cfg(not(feature = "solution"))]
#[allow(unused_variables)]
mod self_attention;
#[cfg(not(feature = "solution"))]
pub use gqa::*;
#[cfg(not(feature = "solution"))]
pub use rope::Offset;
#[cfg(not(feature = "solution"))]
pub use self_attention::*;

#[cfg(feature = "solution")]
pub use gqa_solution::*;
