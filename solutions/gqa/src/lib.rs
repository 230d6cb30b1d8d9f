//! Reference solution of week 1, chapter 3: grouped-query attention.
mod gqa;
mod self_attention;
pub use gqa::*;
pub use rope_solution::Offset;
pub use self_attention::*;
