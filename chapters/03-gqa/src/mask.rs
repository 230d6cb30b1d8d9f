//! What a query may not look at, as grouped-query attention takes it.

use mlx_rs::Array;

/// What a query may not look at.
///
/// Book: week 1, chapter 3 (grouped-query attention), task 2.
#[derive(Clone, Copy, Debug)]
pub enum Mask<'a> {
    /// Every query sees every key.
    None,
    /// Query `i` sees the keys up to its own position ([`causal_mask`]).
    Causal,
    /// An additive mask broadcastable to `[B, H_q, L, S]` (`0` keeps, `-inf` hides).
    Array(&'a Array),
}
