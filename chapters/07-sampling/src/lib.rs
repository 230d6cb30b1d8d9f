//! Week 1, chapter 7: sampling. Your code goes in `src/sampling.rs`; `src/sampling_params.rs` is
//! given. The tests are in `tests/sampling/`. Book: book/src/week1-07-sampling.md.
//!
//! With the `solution` feature each file you write is swapped for its reference twin in
//! `solutions/sampling/src/` (same name, same public API); the given files stay as they are.

// The stubs ignore their arguments until you fill them in.
#[cfg_attr(
    feature = "solution",
    path = "../../../solutions/sampling/src/sampling.rs"
)]
#[cfg_attr(not(feature = "solution"), allow(unused_variables))]
mod sampling;
mod sampling_params;
pub use sampling::*;
pub use sampling_params::*;
