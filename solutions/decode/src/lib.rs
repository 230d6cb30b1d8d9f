//! Reference solution of week 1, chapter 6: tokenizing, chat templates and greedy decoding.
mod context;
mod detokenizer;
mod error;
mod generate;
mod tokenizer;
pub use context::*;
pub use detokenizer::*;
pub use error::*;
pub use generate::*;
pub use load_solution::{LoadError, Model, ModelConfig};
pub use tokenizer::*;
