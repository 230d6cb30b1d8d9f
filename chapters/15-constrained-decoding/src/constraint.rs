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
        todo!("chapter 15, task 2: the library mask while running, only the EOS bits once stopped")
    }

    /// Moves the grammar past `token`, the one just chosen.
    ///
    /// - An end-of-sequence token ends the output: accepted once the grammar has stopped or may
    ///   end here, and then nothing more is consumed.
    /// - Any other token must be allowed; otherwise [`ConstraintError::Rejected`].
    ///
    /// Book: week 3, chapter 15 (constrained decoding), task 2.
    pub fn advance(&mut self, token: u32) -> Result<(), ConstraintError> {
        todo!("chapter 15, task 2: EOS after a stop is fine; otherwise consume the token")
    }

    /// Whether `token` ends the output.
    pub fn is_end(&self, token: u32) -> bool {
        todo!("chapter 15, task 2: is it one of the grammar's EOS tokens?")
    }
}
