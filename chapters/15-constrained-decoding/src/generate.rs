//! Generation under a constraint: mask, sample, advance, one token at a time.

use crate::{mask_logits, unpack_bitmask, Constraint, ConstraintError, LanguageModel, Sampler};
use mlx_rs::Array;

/// Generates up to `max_new_tokens` tokens after `prompt`, each sampled from the logits masked by
/// `constraint`, which advances past it.
///
/// - Stops after an end-of-sequence token (not returned), or after `max_new_tokens` tokens.
/// - Returns the generated tokens: under a constraint that stopped, their text is in its language.
///
/// Book: week 3, chapter 15 (constrained decoding), task 3.
pub fn generate_constrained(
    model: &mut dyn LanguageModel,
    prompt: &[u32],
    constraint: &mut Constraint,
    sampler: &mut Sampler,
    max_new_tokens: usize,
) -> Result<Vec<u32>, ConstraintError> {
    todo!("chapter 15, task 3: logits, allowed words, unpack, mask, sample, advance; stop at EOS")
}
