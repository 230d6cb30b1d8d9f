//! A grammar's bitmask of allowed tokens, unpacked on the device and applied to the logits.

use mlx_rs::{error::Exception, Array, Dtype};

/// Unpacks a bitmask of allowed tokens into one boolean per token.
///
/// - `words`: `[W]` or `[B, W]` uint32; bit `t % 32` of word `t / 32` is set when token `t` is
///   allowed (the layout of llguidance's masks, and of the words in [`Constraint::allowed_words`]).
/// - `vocab_size`: `V`, at most `32 * W`.
/// - Returns `[V]` or `[B, V]` bool: `true` where the token is allowed.
///
/// Book: week 3, chapter 15 (constrained decoding), task 1.
///
/// [`Constraint::allowed_words`]: crate::Constraint::allowed_words
pub fn unpack_bitmask(words: &Array, vocab_size: usize) -> Result<Array, Exception> {
    todo!("chapter 15, task 1: gather each token's word, divide by its bit's power of two, keep what is odd")
}

/// Sets the logits of disallowed tokens to `-inf`, so no sampler can choose them.
///
/// - `logits`: `[V]` or `[B, V]`, any float dtype.
/// - `allowed`: bool, the same shape (or broadcastable to it, e.g. `[V]` for every row).
/// - Returns the shape and dtype of `logits`: allowed entries unchanged, the others `-inf`.
///
/// Book: week 3, chapter 15 (constrained decoding), task 1.
pub fn mask_logits(logits: &Array, allowed: &Array) -> Result<Array, Exception> {
    todo!("chapter 15, task 1: where allowed keep the logit, else -inf in its dtype")
}
