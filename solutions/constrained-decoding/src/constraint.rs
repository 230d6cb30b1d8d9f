//! A grammar's state as the mask of the next token, advanced by each token chosen.

use crate::{mask_words, ConstraintError, GrammarState};

/// One request's constraint: where its grammar is, and which tokens may come next.
pub struct Constraint {
    /// The library's matcher, at the tokens chosen so far.
    pub state: GrammarState,
}

impl Constraint {
    /// A constraint at the start of the output.
    pub fn new(state: GrammarState) -> Self {
        Constraint { state }
    }

    /// The tokens that may come next, as a bitmask of [`mask_words`]`(vocab_size)` words: bit
    /// `t % 32` of word `t / 32` set when token `t` is allowed.
    ///
    /// - While the grammar runs: the library's mask, end-of-sequence tokens included when the
    ///   output may end here.
    /// - Once it has stopped (nothing more may follow): the end-of-sequence tokens alone, so the
    ///   request ends at its next step.
    ///
    /// Book: week 3, chapter 15 (constrained decoding), task 2.
    pub fn allowed_words(&mut self) -> Result<Vec<u32>, ConstraintError> {
        if !self.state.is_stopped() {
            return self.state.mask();
        }
        let mut words = vec![0u32; mask_words(self.state.vocab_size())];
        for &eos in self.state.eos_tokens() {
            words[eos as usize / 32] |= 1 << (eos % 32);
        }
        Ok(words)
    }

    /// Moves the grammar past `token`, the one just chosen.
    ///
    /// - An end-of-sequence token ends the output: accepted once the grammar has stopped or may
    ///   end here, and then nothing more is consumed.
    /// - Any other token must be allowed; otherwise [`ConstraintError::Rejected`].
    ///
    /// Book: week 3, chapter 15 (constrained decoding), task 2.
    pub fn advance(&mut self, token: u32) -> Result<(), ConstraintError> {
        if self.state.is_stopped() {
            if self.state.eos_tokens().contains(&token) {
                return Ok(());
            }
            return Err(ConstraintError::Rejected {
                token,
                message: "the grammar is complete: only end-of-sequence may follow".into(),
            });
        }
        self.state.consume(token)
    }

    /// Whether `token` ends the output.
    pub fn is_end(&self, token: u32) -> bool {
        self.state.eos_tokens().contains(&token)
    }
}
