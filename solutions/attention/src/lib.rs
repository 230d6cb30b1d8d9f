//! Reference solution of week 1, chapter 1: attention.
mod attention;
pub use attention::*;
