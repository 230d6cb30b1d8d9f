//! What can go wrong when loading a model, each naming the file or tensor at fault.

use std::path::PathBuf;

/// A model that cannot be loaded. Given: you return these, you do not need to change them.
///
/// Book: week 1, chapter 5 (loading a model).
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("cannot read {path}: {message}")]
    Unreadable { path: PathBuf, message: String },
    #[error("{path}: {message}")]
    BadConfig { path: PathBuf, message: String },
    #[error("{path}: architecture {found:?} is not supported (Llama, Qwen2 and Qwen3 are)")]
    UnsupportedArchitecture { path: PathBuf, found: String },
    #[error("{path}: tensor {name} holds NaN or infinite values: the file is corrupt (fetch or convert it again)")]
    NotFinite { path: PathBuf, name: String },
    #[error("the weights lack the tensor {name}")]
    MissingTensor { name: String },
    #[error("tensor {name} has shape {found:?}, expected {expected:?}")]
    WrongShape {
        name: String,
        found: Vec<i32>,
        expected: Vec<i32>,
    },
    /// Chapter 9: a quantization that does not fit the model (bits, group size).
    #[error("{0}")]
    Quantization(String),
    #[error("MLX: {0}")]
    Mlx(#[from] mlx_rs::error::Exception),
}
