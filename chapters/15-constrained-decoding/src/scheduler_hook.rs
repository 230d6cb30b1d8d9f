//! Your constraint in chapter 10's schedulers (and so in the server): each request's
//! [`Constraint`] behind the [`TokenConstraint`] hook that `choose` calls. Given.

use crate::{unpack_bitmask, Constraint};
use continuous_batching::{SharedConstraint, TokenConstraint};
use mlx_rs::Array;

impl TokenConstraint for Constraint {
    fn allowed(&mut self, vocab_size: usize) -> Result<Array, String> {
        let words = self.allowed_words().map_err(|e| e.to_string())?;
        let words = Array::from_slice(&words, &[words.len() as i32]); // [W]
        unpack_bitmask(&words, vocab_size).map_err(|e| e.to_string()) // [V]
    }

    fn advance(&mut self, token: u32) -> Result<(), String> {
        Constraint::advance(self, token).map_err(|e| e.to_string())
    }
}

impl From<Constraint> for SharedConstraint {
    fn from(constraint: Constraint) -> Self {
        SharedConstraint::new(constraint)
    }
}
