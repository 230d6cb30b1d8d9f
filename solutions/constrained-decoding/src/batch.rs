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
    let vocab_size = logits.shape().last().copied().unwrap_or(0) as usize;
    let width = mask_words(vocab_size);
    let mut words = Vec::with_capacity(rows.len() * width);
    for row in rows.iter_mut() {
        match row.constraint.as_deref_mut() {
            Some(constraint) => words.extend(constraint.allowed_words()?),
            None => words.extend(std::iter::repeat_n(u32::MAX, width)),
        }
    }
    let words = Array::from_slice(&words, &[rows.len() as i32, width as i32]); // [B, W]
    let masked = mask_logits(logits, &unpack_bitmask(&words, vocab_size)?)?; // [B, V]
    let mut tokens = Vec::with_capacity(rows.len());
    for (b, row) in rows.iter_mut().enumerate() {
        let token = row.sampler.sample(&masked.index(b as i32), row.tokens)?; // from [V]
        if let Some(constraint) = row.constraint.as_deref_mut() {
            constraint.advance(token)?;
        }
        tokens.push(token);
    }
    Ok(tokens)
}
