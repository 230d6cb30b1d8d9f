//! Week 1, chapter 2: rotary position embedding. Your code goes in `src/rope.rs`; the tests are
//! in `tests/rope.rs`. Book: book/src/week1-02-rope.md.
//!
//! With the `solution` feature this crate exposes the reference solution instead.

// The stubs ignore their arguments until you fill them in.
#[cfg(not(feature = "solution"))]
#[allow(unused_variables)]
mod rope;
#[cfg(not(feature = "solution"))]
pub use rope::*;

#[cfg(feature = "solution")]
pub use rope_solution::*;
