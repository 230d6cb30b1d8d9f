//! Week 1, chapter 7: sampling. Your code goes in `src/sampling.rs`; the tests are in
//! `tests/sampling.rs`. Book: book/src/week1-07-sampling.md.
//!
//! With the `solution` feature this crate exposes the reference solution instead.

// The stubs ignore their arguments until you fill them in.
#[cfg(not(feature = "solution"))]
#[allow(unused_variables)]
mod sampling;
#[cfg(not(feature = "solution"))]
pub use sampling::*;

#[cfg(feature = "solution")]
pub use sampling_solution::*;
