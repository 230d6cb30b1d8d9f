//! Week 1, chapter 1: attention. Your code goes in `src/attention.rs`; the tests are in
//! `tests/attention.rs`. Book: book/src/week1-01-attention.md.
//!
//! With the `solution` feature each file you write is swapped for its reference twin in
//! `solutions/attention/src/` (same name, same public API); the given files stay as they are.

// The stubs ignore their arguments until you fill them in.
#[cfg_attr(
    feature = "solution",
    path = "../../../solutions/attention/src/attention.rs"
)]
#[cfg_attr(not(feature = "solution"), allow(unused_variables))]
mod attention;
pub use attention::*;
