//! Week 1, chapter 5: loading a model. Your code goes in `src/config.rs`, `src/weights.rs` and
//! `src/model.rs`; `src/error.rs` is given. The tests are in `tests/load.rs`.
//! Book: book/src/week1-05-load.md.
//!
//! With the `solution` feature this crate exposes the reference solution instead.

// The stubs ignore their arguments until you fill them in; model.rs already imports what you need.
#[cfg(not(feature = "solution"))]
#[allow(unused_variables)]
mod config;
#[cfg(not(feature = "solution"))]
mod error;
#[cfg(not(feature = "solution"))]
#[allow(unused_variables, unused_imports, dead_code)]
mod model;
#[cfg(not(feature = "solution"))]
mod safetensors_check;
#[cfg(not(feature = "solution"))]
#[allow(unused_variables)]
mod weights;
#[cfg(not(feature = "solution"))]
pub use {config::*, error::*, model::*, safetensors_check::*, weights::*};

#[cfg(feature = "solution")]
pub use load_solution::*;
