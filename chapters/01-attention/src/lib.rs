//! Week 1, chapter 1: attention. Your code goes in `src/attention.rs`; the tests are in
//! `tests/attention.rs`. Book: book/src/week1-01-attention.md.
//!
//! With the `solution` feature this crate exposes the reference solution instead.

// The stubs ignore their arguments until you fill them in.
#[cfg(not(feature = "solution"))]
#[allow(unused_variables)]
mod attention;
#[cfg(not(feature = "solution"))]
pub use attention::*;

#[cfg(feature = "solution")]
pub use attention_solution::*;
