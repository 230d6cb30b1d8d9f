//! Reference solution of week 1, chapter 2: rotary position embedding.
mod rope;
pub use rope::*;
