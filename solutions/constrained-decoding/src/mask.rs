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
    let width = words.shape().last().copied().unwrap_or(0) as usize;
    if words.dtype() != Dtype::Uint32 || width * 32 < vocab_size {
        return Err(Exception::custom(format!(
            "a bitmask over {vocab_size} tokens is [.., {}] uint32, got {:?} {:?}",
            vocab_size.div_ceil(32),
            words.shape(),
            words.dtype()
        )));
    }
    let tokens: Vec<u32> = (0..vocab_size as u32).collect();
    let tokens = Array::from_slice(&tokens, &[vocab_size as i32]); // [V]
    let word_of_token = tokens.floor_divide(Array::from_int(32))?; // [V]
    let bit_value: Vec<u32> = (0..32).map(|bit| 1u32 << bit).collect();
    let bit_value = Array::from_slice(&bit_value, &[32])
        .take_axis(tokens.remainder(Array::from_int(32))?, 0)?; // [V]
    let word = words.take_axis(&word_of_token, -1)?; // [V] or [B, V]
                                                     // The bit of each token: its word shifted right by the bit's position, modulo 2.
    word.floor_divide(&bit_value)?
        .remainder(Array::from_slice(&[2u32], &[1]))?
        .ne(Array::from_slice(&[0u32], &[1]))
}

/// Sets the logits of disallowed tokens to `-inf`, so no sampler can choose them.
///
/// - `logits`: `[V]` or `[B, V]`, any float dtype.
/// - `allowed`: bool, the same shape (or broadcastable to it, e.g. `[V]` for every row).
/// - Returns the shape and dtype of `logits`: allowed entries unchanged, the others `-inf`.
///
/// Book: week 3, chapter 15 (constrained decoding), task 1.
pub fn mask_logits(logits: &Array, allowed: &Array) -> Result<Array, Exception> {
    let negative_infinity = Array::from_f32(f32::NEG_INFINITY).as_dtype(logits.dtype())?;
    mlx_rs::ops::select(allowed, logits, &negative_infinity)
}
