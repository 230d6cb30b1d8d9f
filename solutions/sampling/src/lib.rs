//! Reference solution of week 1, chapter 7: sampling.
mod sampling;
pub use sampling::*;
