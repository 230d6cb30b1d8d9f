//! What can go wrong while tokenizing and generating, each naming the file at fault.

use std::path::PathBuf;

/// Tokenizing or generating failed. Given: you return these, you do not need to change them.
///
/// Book: week 1, chapter 6 (decoding).
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("cannot read {path}: {message}")]
    Unreadable { path: PathBuf, message: String },
    #[error("{path}: {message}")]
    BadTokenizer { path: PathBuf, message: String },
    #[error("{path} has no chat_template: this model has no chat format, give it plain text")]
    NoChatTemplate { path: PathBuf },
    #[error("chat template: {0}")]
    Template(String),
    #[error("tokenizer: {0}")]
    Tokenizer(String),
    #[error("MLX: {0}")]
    Mlx(#[from] mlx_rs::error::Exception),
}
