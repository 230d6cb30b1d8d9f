//! Reference solution of week 1, chapter 5: loading a model and running it.
mod config;
mod error;
mod model;
mod safetensors_check;
mod weights;
pub use config::*;
pub use error::*;
pub use model::*;
pub use safetensors_check::*;
pub use weights::*;
