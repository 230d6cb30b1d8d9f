//! The end of chapter 6's decode loop, one chosen token at a time: EOS, the token limit, stop
//! strings and streaming text. Given: speculative generation yields several tokens per step and
//! pushes them here in order.

use decode::{
    DecodeError, Generation, GenerationOptions, StopReason, StreamingDetokenizer, Tokenizer,
};
use mlx_rs::{error::Exception, Array};

/// The tokens generated so far, their text, and whether generation must stop.
///
/// Given.
pub struct Output<'a> {
    tokenizer: &'a Tokenizer,
    options: &'a GenerationOptions,
    eos_ids: Vec<u32>,
    tokens: Vec<u32>,
    detokenizer: StreamingDetokenizer,
    text: String,
    /// Bytes of `text` passed to `on_text`.
    streamed: usize,
    stop_reason: Option<StopReason>,
}

impl<'a> Output<'a> {
    /// `eos_ids`: the target's end-of-sequence ids (its config's `eos_token_ids`).
    pub fn new(tokenizer: &'a Tokenizer, options: &'a GenerationOptions, eos_ids: &[u32]) -> Self {
        Output {
            tokenizer,
            options,
            eos_ids: eos_ids.to_vec(),
            tokens: Vec::new(),
            detokenizer: StreamingDetokenizer::new(),
            text: String::new(),
            streamed: 0,
            stop_reason: None,
        }
    }

    /// How many more tokens may be generated; 0 once generation has stopped.
    pub fn remaining(&self) -> usize {
        match self.stop_reason {
            Some(_) => 0,
            None => self.options.max_new_tokens - self.tokens.len(),
        }
    }

    /// `logits` (`[..., V]`) with every EOS id at `-inf` when the options say `ignore_eos`, as
    /// chapter 6's `generate` masks them; unchanged otherwise.
    pub fn mask_ignored_eos(&self, logits: &Array) -> Result<Array, Exception> {
        if !self.options.ignore_eos {
            return Ok(logits.clone());
        }
        let vocab = *logits.shape().last().unwrap_or(&0);
        let mask: Vec<f32> = (0..vocab as u32)
            .map(|id| {
                if self.eos_ids.contains(&id) {
                    f32::NEG_INFINITY
                } else {
                    0.0
                }
            })
            .collect();
        logits.add(Array::from_slice(&mask, &[vocab])) // [..., V]
    }

    /// Takes the next chosen token and streams the text it completes. Returns `false` when
    /// generation stops here: the token is an EOS (not kept), it completes a stop string (kept,
    /// the text cut before the stop string), or it is the last one `max_new_tokens` allows.
    pub fn push(&mut self, token: u32, on_text: &mut dyn FnMut(&str)) -> Result<bool, DecodeError> {
        if self.remaining() == 0 {
            return Ok(false);
        }
        if self.eos_ids.contains(&token) && !self.options.ignore_eos {
            self.stop_reason = Some(StopReason::Eos);
            return Ok(false);
        }
        self.tokens.push(token);
        self.text
            .push_str(&self.detokenizer.push(self.tokenizer, token)?);
        let stop_at = self
            .options
            .stop_strings
            .iter()
            .filter_map(|stop| self.text.find(stop.as_str()))
            .min();
        if let Some(stop_at) = stop_at {
            self.text.truncate(stop_at);
            self.stop_reason = Some(StopReason::StopString);
            return Ok(false);
        }
        let safe = self.text.len() - partial_stop_len(&self.text, &self.options.stop_strings);
        if safe > self.streamed {
            on_text(&self.text[self.streamed..safe]);
            self.streamed = safe;
        }
        if self.tokens.len() == self.options.max_new_tokens {
            self.stop_reason = Some(StopReason::MaxTokens);
            return Ok(false);
        }
        Ok(true)
    }

    /// Streams what is held back and returns the generation, as chapter 6's `generate` does.
    pub fn finish(mut self, on_text: &mut dyn FnMut(&str)) -> Result<Generation, DecodeError> {
        let stop_reason = self.stop_reason.unwrap_or(StopReason::MaxTokens);
        if stop_reason != StopReason::StopString {
            self.text
                .push_str(&self.detokenizer.finish(self.tokenizer)?);
        }
        if self.text.len() > self.streamed {
            on_text(&self.text[self.streamed..]);
        }
        Ok(Generation {
            tokens: self.tokens,
            text: self.text,
            stop_reason,
        })
    }
}

/// Bytes at the end of `text` that could be the start of a stop string: held back until the
/// next tokens show whether the stop string follows.
fn partial_stop_len(text: &str, stop_strings: &[String]) -> usize {
    stop_strings
        .iter()
        .flat_map(|stop| stop.char_indices().skip(1).map(|(end, _)| &stop[..end]))
        .filter(|prefix| text.ends_with(prefix))
        .map(str::len)
        .max()
        .unwrap_or(0)
}
