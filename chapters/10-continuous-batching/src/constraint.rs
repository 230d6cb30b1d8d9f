//! What a request may generate: a hook for constrained decoding (week 3, chapter 15), which
//! restricts each token to those a grammar allows. Given.

use mlx_rs::{error::Exception, Array};
use std::{
    fmt,
    sync::{Arc, Mutex},
};

/// Says which tokens a request may choose next, and follows the ones it chooses.
pub trait TokenConstraint: Send {
    /// The tokens allowed next, `[V]` bool over the model's `vocab_size` logits.
    fn allowed(&mut self, vocab_size: usize) -> Result<Array, String>;
    /// Moves past the token just chosen (a stop token included).
    fn advance(&mut self, token: u32) -> Result<(), String>;
}

/// A request's constraint. Shared, so that a [`Request`](crate::Request) stays `Clone` and a
/// preempted request keeps its place in the grammar.
#[derive(Clone)]
pub struct SharedConstraint(Arc<Mutex<Box<dyn TokenConstraint>>>);

impl SharedConstraint {
    pub fn new(constraint: impl TokenConstraint + 'static) -> Self {
        SharedConstraint(Arc::new(Mutex::new(Box::new(constraint))))
    }

    /// `logits` `[V]` with every token the constraint does not allow at `-inf`.
    pub fn mask(&self, logits: &Array) -> Result<Array, Exception> {
        let vocab_size = logits.shape().last().copied().unwrap_or(0) as usize;
        let allowed = self
            .lock()?
            .allowed(vocab_size)
            .map_err(Exception::custom)?;
        let negative_infinity = Array::from_f32(f32::NEG_INFINITY).as_dtype(logits.dtype())?;
        mlx_rs::ops::select(&allowed, logits, &negative_infinity)
    }

    /// Moves the constraint past `token`.
    pub fn advance(&self, token: u32) -> Result<(), Exception> {
        self.lock()?.advance(token).map_err(Exception::custom)
    }

    fn lock(&self) -> Result<std::sync::MutexGuard<'_, Box<dyn TokenConstraint>>, Exception> {
        self.0
            .lock()
            .map_err(|_| Exception::custom("a token constraint panicked earlier"))
    }
}

impl fmt::Debug for SharedConstraint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SharedConstraint")
    }
}

impl PartialEq for SharedConstraint {
    /// The same constraint, not an equal one.
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}
