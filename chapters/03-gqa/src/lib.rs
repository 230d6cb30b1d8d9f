//! Week 1, chapter 3: grouped-query attention. Your code goes in `src/gqa.rs` (masks and
//! attention with shared key/value heads) and `src/self_attention.rs` (the model's attention
//! layer); the tests are in `tests/gqa.rs`. Book: book/src/week1-03-gqa.md.
//!
//! With the `solution` feature each file you write is swapped for its reference twin in
//! `solutions/gqa/src/` (same name, same public API); the given files stay as they are.

// The stubs ignore their arguments until you fill them in.
#[cfg_attr(feature = "solution", path = "../../../solutions/gqa/src/gqa.rs")]
#[cfg_attr(not(feature = "solution"), allow(unused_variables))]
mod gqa;
#[cfg_attr(
    feature = "solution",
    path = "../../../solutions/gqa/src/self_attention.rs"
)]
#[cfg_attr(not(feature = "solution"), allow(unused_variables))]
mod self_attention;
pub use gqa::*;
pub use rope::Offset;
pub use self_attention::*;
