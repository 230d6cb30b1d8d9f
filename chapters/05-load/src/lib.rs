//! Week 1, chapter 5: loading a model. Your code goes in `src/config.rs`, `src/weights.rs` and
//! `src/model.rs`; `src/error.rs` is given. The tests are in `tests/load.rs`.
//! Book: book/src/week1-05-load.md.
//!
//! With the `solution` feature each file you write is swapped for its reference twin in
//! `solutions/load/src/` (same name, same public API); the given files stay as they are.

// The stubs ignore their arguments until you fill them in; model.rs already imports what you need.
#[cfg_attr(feature = "solution", path = "../../../solutions/load/src/config.rs")]
#[cfg_attr(not(feature = "solution"), allow(unused_variables))]
mod config;
mod error;
#[cfg_attr(feature = "solution", path = "../../../solutions/load/src/model.rs")]
#[cfg_attr(
    not(feature = "solution"),
    allow(unused_variables, unused_imports, dead_code)
)]
mod model;
mod safetensors_check;
#[cfg_attr(feature = "solution", path = "../../../solutions/load/src/weights.rs")]
#[cfg_attr(not(feature = "solution"), allow(unused_variables))]
mod weights;
pub use {config::*, error::*, model::*, safetensors_check::*, weights::*};
