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
    let mut sequence = prompt.to_vec();
    let mut generated = Vec::new();
    while generated.len() < max_new_tokens {
        let logits = model.next_token_logits(&sequence)?; // [V]
        let words = constraint.allowed_words()?;
        let words = Array::from_slice(&words, &[words.len() as i32]); // [W]
        let vocab_size = logits.shape()[0] as usize;
        let masked = mask_logits(&logits, &unpack_bitmask(&words, vocab_size)?)?; // [V]
        let token = sampler.sample(&masked, &sequence)?;
        constraint.advance(token)?;
        if constraint.is_end(token) {
            break;
        }
        sequence.push(token);
        generated.push(token);
    }
    Ok(generated)
}
