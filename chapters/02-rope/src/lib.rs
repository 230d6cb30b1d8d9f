//! Week 1, chapter 2: rotary position embedding. Your code goes in `src/rope.rs`; given:
//! `src/offset.rs` (`Offset`, the position of each row's first token) and `src/shape.rs`
//! (`shape4` and `shape3`, the shape check at the top of a layer, for your `apply` and the
//! layers of later chapters). The tests are in `tests/rope.rs`. Book: book/src/week1-02-rope.md.
//!
//! With the `solution` feature each file you write is swapped for its reference twin in
//! `solutions/rope/src/` (same name, same public API); the given files stay as they are.

// The stubs ignore their arguments until you fill them in.
#[cfg_attr(feature = "solution", path = "../../../solutions/rope/src/rope.rs")]
#[cfg_attr(not(feature = "solution"), allow(unused_variables))]
mod rope;
pub use rope::*;

// Given.
mod offset;
mod shape;
pub use {offset::*, shape::*};
