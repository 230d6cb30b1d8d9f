//! Reference solution of week 1, chapter 5: loading a model and running it.
mod config;
mod error;
mod model;
mod weights;
pub use config::*;
pub use error::*;
pub use model::*;
pub use weights::*;
