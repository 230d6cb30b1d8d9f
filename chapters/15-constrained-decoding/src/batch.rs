//! One sampling step over a batch whose rows may or may not be constrained.

use crate::{mask_logits, mask_words, unpack_bitmask, Constraint, ConstraintError, Sampler};
use mlx_rs::{ops::indexing::IndexOp, Array};

/// One row of a batch at a step: its sampler, its tokens so far (prompt included), and its
/// constraint if it has one.
pub struct BatchRow<'a> {
    pub sampler: &'a mut Sampler,
    pub tokens: &'a [u32],
    pub constraint: Option<&'a mut Constraint>,
}

/// Chooses the next token of every row from `logits` `[B, V]`.
///
/// - The masks of all rows go to the device as one `[B, W]` bitmask (every bit set for a row
///   without a constraint), unpacked and applied by one [`unpack_bitmask`] and one
///   [`mask_logits`]: the cost of constraints stays one op whatever the mix.
/// - Each row then samples from its masked row with its own sampler, and its constraint (if
///   any) advances past the token.
/// - Returns one token per row, in order.
///
/// Book: week 3, chapter 15 (constrained decoding), task 4.
pub fn sample_batch(
    logits: &Array,
    rows: &mut [BatchRow<'_>],
) -> Result<Vec<u32>, ConstraintError> {
    todo!("chapter 15, task 4: one [B, W] bitmask (all ones for free rows), one mask op, then each row samples and advances")
}
