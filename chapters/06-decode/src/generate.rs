//! The decode loop: run the model, choose the next token, stream its text, stop.

use crate::{
    DecodeError, Generation, GenerationOptions, LanguageModel, NextToken, StopReason,
    StreamingDetokenizer, Tokenizer,
};
use mlx_rs::{error::Exception, ops, Array};

/// The argmax of `logits`: the next token of greedy decoding, for [`generate`].
///
/// - `logits`: `[V]`, the last position's logits; greedy choice ignores the tokens so far.
///
/// Book: week 1, chapter 6 (decoding), task 4.
pub fn greedy(logits: &Array, _tokens: &[u32]) -> Result<u32, DecodeError> {
    todo!("chapter 6, task 4: the argmax of the logits, as a token id")
}

/// Generates after `prompt`, choosing each token with `next_token`, streaming the new text
/// through `on_text` as it completes.
///
/// - Each step asks `model` for the next token's logits `[V]` (see [`LanguageModel`]) and passes
///   them to `next_token`, with the tokens so far (prompt included); [`greedy`] takes the argmax,
///   chapter 7's sampler draws from them.
/// - Stops on an EOS id of the model's config (unless `ignore_eos`, which masks every EOS id to
///   -inf before `next_token` sees the logits), after `max_new_tokens`, or when the text contains a
///   stop string, even one spanning several tokens. Neither the EOS token nor the stop string is
///   streamed or in `text`.
///
/// Book: week 1, chapter 6 (decoding), task 4.
pub fn generate(
    model: &mut dyn LanguageModel,
    tokenizer: &Tokenizer,
    prompt: &[u32],
    options: &GenerationOptions,
    next_token: &mut NextToken<'_>,
    on_text: &mut dyn FnMut(&str),
) -> Result<Generation, DecodeError> {
    todo!("chapter 6, task 4: ask the model for the next token's logits, mask EOS if asked, call next_token, stream, stop on EOS, max tokens or a stop string")
}
