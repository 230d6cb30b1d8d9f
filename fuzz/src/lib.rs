//! The parsers under fuzzing, without MLX and the model converter's heavy dependencies: the GGUF
//! reader (tools/model-convert without its `convert` feature) and, from their source files, the
//! safetensors header check and `config.json` parsing (chapter 5's loader, before MLX reads a
//! file). A parser may return any error; it must never panic, hang or allocate what a header
//! claims (libFuzzer's `-rss_limit_mb` catches the last).

use std::path::{Path, PathBuf};

/// The loader's error type, reduced to the variants these two files build: the real one also
/// wraps MLX's errors, which would link MLX.
#[derive(Debug)]
pub enum LoadError {
    Unreadable { path: PathBuf, message: String },
    BadConfig { path: PathBuf, message: String },
    UnsupportedArchitecture { path: PathBuf, found: String },
}

pub use model_convert::gguf;

#[allow(dead_code)]
#[path = "../../solutions/load/src/config.rs"]
mod config;

#[allow(dead_code)]
#[path = "../../chapters/05-load/src/safetensors_check.rs"]
mod safetensors_check;

/// Parses `bytes` as a whole GGUF file.
pub fn parse_gguf(bytes: &[u8]) -> Result<gguf::Gguf, gguf::Problem> {
    gguf::Gguf::parse(Path::new("fuzz-input.gguf"), bytes.to_vec())
}

/// Checks `bytes` as a whole safetensors file, as the loader does before MLX reads it.
pub fn check_safetensors(bytes: &[u8]) -> Result<(), String> {
    let length: [u8; 8] = bytes
        .get(..8)
        .and_then(|prefix| prefix.try_into().ok())
        .ok_or("shorter than the header length")?;
    let size = bytes.len() as u64;
    let header = safetensors_check::header_length(u64::from_le_bytes(length), size)?;
    safetensors_check::check_header(&bytes[8..8 + header], size)
}

/// Parses `text` as a model's `config.json`.
pub fn parse_config(text: &str) -> Result<(), LoadError> {
    config::ModelConfig::from_json(Path::new("fuzz-config.json"), text).map(|_| ())
}
