//! Week 1, chapter 6: from tokens to text. Your code goes in `src/tokenizer.rs`,
//! `src/detokenizer.rs` and `src/generate.rs`; `src/error.rs`, `src/message.rs`,
//! `src/special_token.rs`, `src/chat_template.rs`, `src/generation.rs` and `src/context.rs` are
//! given. The tests are in
//! `tests/decode.rs`. Book: book/src/week1-06-decode.md.
//!
//! With the `solution` feature each file you write is swapped for its reference twin in
//! `solutions/decode/src/` (same name, same public API); the given files stay as they are.

// The stubs ignore their arguments until you fill them in; each file already imports what you need.
mod chat_template;
mod context;
#[cfg_attr(
    feature = "solution",
    path = "../../../solutions/decode/src/detokenizer.rs"
)]
#[cfg_attr(
    not(feature = "solution"),
    allow(unused_variables, unused_imports, dead_code)
)]
mod detokenizer;
mod error;
#[cfg_attr(
    feature = "solution",
    path = "../../../solutions/decode/src/generate.rs"
)]
#[cfg_attr(
    not(feature = "solution"),
    allow(unused_variables, unused_imports, dead_code)
)]
mod generate;
mod generation;
mod message;
mod special_token;
#[cfg_attr(
    feature = "solution",
    path = "../../../solutions/decode/src/tokenizer.rs"
)]
#[cfg_attr(
    not(feature = "solution"),
    allow(unused_variables, unused_imports, dead_code)
)]
mod tokenizer;
pub use {
    chat_template::*,
    context::*,
    detokenizer::*,
    error::*,
    generate::*,
    generation::*,
    load::{LoadError, Model, ModelConfig},
    message::*,
    tokenizer::*,
};
