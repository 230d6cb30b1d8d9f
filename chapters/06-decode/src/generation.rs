//! What the decode loop takes and returns: its options, its result, why it stopped, and the
//! model it drives ([`LanguageModel`], which chapter 5's model implements here).

use crate::DecodeError;
use load::{Model, ModelConfig};
use mlx_rs::{ops::indexing::IndexOp, Array};

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

/// What [`generate`](crate::generate) needs from a model: the scores of the token after a sequence.
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
/// included): [`greedy`](crate::greedy), or chapter 7's sampler.
pub type NextToken<'a> = dyn FnMut(&Array, &[u32]) -> Result<u32, DecodeError> + 'a;
