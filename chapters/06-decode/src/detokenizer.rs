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
    // Keep the tokens so far and how many bytes of their text you have handed out.
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
        todo!("chapter 6, task 3: decode all tokens so far, return the new text unless it ends in U+FFFD")
    }

    /// The text not handed out yet, complete or not (call it when generation ends).
    ///
    /// Book: week 1, chapter 6 (decoding), task 3.
    pub fn finish(&mut self, tokenizer: &Tokenizer) -> Result<String, DecodeError> {
        todo!("chapter 6, task 3: return whatever text has not been returned yet")
    }
}
