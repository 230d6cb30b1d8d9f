//! Turning generated tokens into text as they arrive, without splitting a character.

use crate::{DecodeError, Tokenizer};

/// Decodes a growing token sequence and hands out only the text that is new and complete.
///
/// A byte-level tokenizer can split one character over several tokens ("🙂" is 4 bytes); decoding
/// such a prefix gives U+FFFD, so that text is held back until the character is complete.
///
/// Book: week 1, chapter 6 (decoding), task 3.
#[derive(Debug, Default)]
pub struct StreamingDetokenizer {
    tokens: Vec<u32>,
    /// Bytes of the decoded text already handed out.
    emitted: usize,
}

impl StreamingDetokenizer {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `token` and returns the text it completes: empty while the text ends in a partial
    /// character (U+FFFD), never a partial character, and never text returned before.
    ///
    /// Book: week 1, chapter 6 (decoding), task 3.
    pub fn push(&mut self, tokenizer: &Tokenizer, token: u32) -> Result<String, DecodeError> {
        self.tokens.push(token);
        // Decoding everything so far is quadratic but always right: a token's text can depend on
        // its neighbours (byte fallback, a leading space that a decoder strips).
        let text = tokenizer.decode(&self.tokens)?;
        if text.ends_with('\u{FFFD}') {
            return Ok(String::new());
        }
        Ok(self.take_new(text))
    }

    /// The text not handed out yet, complete or not (call it when generation ends).
    ///
    /// Book: week 1, chapter 6 (decoding), task 3.
    pub fn finish(&mut self, tokenizer: &Tokenizer) -> Result<String, DecodeError> {
        let text = tokenizer.decode(&self.tokens)?;
        Ok(self.take_new(text))
    }

    fn take_new(&mut self, text: String) -> String {
        let new = text.get(self.emitted..).unwrap_or_default().to_string();
        self.emitted = text.len();
        new
    }
}
