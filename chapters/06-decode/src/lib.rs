//! Week 1, chapter 6: from tokens to text. Your code goes in `src/tokenizer.rs`,
//! `src/detokenizer.rs` and `src/generate.rs`; `src/error.rs` and `src/context.rs` are given. The tests are in
//! `tests/decode.rs`. Book: book/src/week1-06-decode.md.
//!
//! With the `solution` feature this crate exposes the reference solution instead.

// The stubs ignore their arguments until you fill them in; each file already imports what you need.
#[cfg(not(feature = "solution"))]
mod context;
#[cfg(not(feature = "solution"))]
#[allow(unused_variables, unused_imports, dead_code)]
mod detokenizer;
#[cfg(not(feature = "solution"))]
mod error;
#[cfg(not(feature = "solution"))]
#[allow(unused_variables, unused_imports, dead_code)]
mod generate;
#[cfg(not(feature = "solution"))]
#[allow(unused_variables, unused_imports, dead_code)]
mod tokenizer;
#[cfg(not(feature = "solution"))]
pub use {
    context::*,
    detokenizer::*,
    error::*,
    generate::*,
    load::{LoadError, Model, ModelConfig},
    tokenizer::*,
};

#[cfg(feature = "solution")]
pub use decode_solution::*;
