//! The decode loop: run the model, choose the next token, stream its text, stop.

use crate::{DecodeError, StreamingDetokenizer, Tokenizer};
use load::{Model, ModelConfig};
use mlx_rs::{error::Exception, ops, ops::indexing::IndexOp, Array};

/// Why generation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopReason {
    /// The model chose an end-of-sequence token (not included in the output).
    Eos,
    /// `max_new_tokens` tokens were generated.
    MaxTokens,
    /// The text reached one of the stop strings (not included in the text).
    StopString,
}

#[derive(Debug, Clone, Default)]
pub struct GenerationOptions {
    pub max_new_tokens: usize,
    /// Generation stops as soon as the text contains one of these.
    pub stop_strings: Vec<String>,
    /// Never choose an end-of-sequence token (Hugging Face's `min_new_tokens`).
    pub ignore_eos: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Generation {
    /// Every generated token, the one that completed a stop string included.
    pub tokens: Vec<u32>,
    /// Their text, cut before the stop string.
    pub text: String,
    pub stop_reason: StopReason,
}

/// Bytes at the end of `text` that could be the start of a stop string: they are held back
/// from the stream until the next tokens show whether the stop string follows.
fn partial_stop_len(text: &str, stop_strings: &[String]) -> usize {
    stop_strings
        .iter()
        .flat_map(|stop| stop.char_indices().skip(1).map(|(end, _)| &stop[..end]))
        .filter(|prefix| text.ends_with(prefix))
        .map(str::len)
        .max()
        .unwrap_or(0)
}

/// What [`generate`] needs from a model: the scores of the token after a sequence.
///
/// Chapter 5's [`Model`] reruns the whole sequence at every step; chapter 8's cached model runs
/// only the tokens it has not seen yet.
pub trait LanguageModel {
    fn config(&self) -> &ModelConfig;
    /// The logits `[V]` of the token after `sequence` (the prompt and every token chosen so far).
    fn next_token_logits(&mut self, sequence: &[u32]) -> Result<Array, DecodeError>;
}

/// Given: no cache, so every step runs the model on the whole sequence so far.
impl LanguageModel for Model {
    fn config(&self) -> &ModelConfig {
        Model::config(self)
    }

    fn next_token_logits(&mut self, sequence: &[u32]) -> Result<Array, DecodeError> {
        let input = Array::from_slice(sequence, &[1, sequence.len() as i32]); // [1, L] uint32
        Ok(self.forward(&input)?.index((0, -1))) // [V]
    }
}

/// Chooses the next token from the last position's logits `[V]` and the tokens so far (prompt
/// included): [`greedy`], or chapter 7's sampler.
pub type NextToken<'a> = dyn FnMut(&Array, &[u32]) -> Result<u32, DecodeError> + 'a;

/// The argmax of `logits`: the next token of greedy decoding, for [`generate`].
///
/// - `logits`: `[V]`, the last position's logits; greedy choice ignores the tokens so far.
///
/// Book: week 1, chapter 6 (decoding), task 4.
pub fn greedy(logits: &Array, _tokens: &[u32]) -> Result<u32, DecodeError> {
    ops::indexing::argmax(logits, None)? // [] uint32
        .try_item_cast::<u32>()
        .map_err(|error| Exception::custom(error.to_string()).into())
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
    let eos_ids = model.config().eos_token_ids.clone();
    let vocab_size = model.config().vocab_size as usize;
    let eos_mask: Vec<f32> = (0..vocab_size as u32)
        .map(|id| {
            if options.ignore_eos && eos_ids.contains(&id) {
                f32::NEG_INFINITY
            } else {
                0.0
            }
        })
        .collect();
    let eos_mask = Array::from_slice(&eos_mask, &[vocab_size as i32]); // [V]

    let mut sequence = prompt.to_vec();
    let mut tokens = Vec::new();
    let mut detokenizer = StreamingDetokenizer::new();
    let mut text = String::new();
    let mut streamed = 0; // bytes of `text` passed to on_text
    let mut stop_reason = StopReason::MaxTokens;
    while tokens.len() < options.max_new_tokens {
        let logits = model.next_token_logits(&sequence)?; // [V]
        let next = next_token(&ops::add(&logits, &eos_mask)?, &sequence)?;
        if eos_ids.contains(&next) {
            stop_reason = StopReason::Eos;
            break;
        }
        sequence.push(next);
        tokens.push(next);
        text.push_str(&detokenizer.push(tokenizer, next)?);
        let stop_at = options
            .stop_strings
            .iter()
            .filter_map(|stop| text.find(stop.as_str()))
            .min();
        if let Some(stop_at) = stop_at {
            text.truncate(stop_at);
            stop_reason = StopReason::StopString;
            break;
        }
        let safe = text.len() - partial_stop_len(&text, &options.stop_strings);
        if safe > streamed {
            on_text(&text[streamed..safe]);
            streamed = safe;
        }
    }
    if stop_reason != StopReason::StopString {
        text.push_str(&detokenizer.finish(tokenizer)?);
    }
    if text.len() > streamed {
        on_text(&text[streamed..]);
    }
    Ok(Generation {
        tokens,
        text,
        stop_reason,
    })
}
