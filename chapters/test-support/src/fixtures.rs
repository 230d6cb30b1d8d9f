//! Reference tensors committed under `models/fixtures/`, produced by an independent
//! implementation (see models/fixtures/README.md).

use mlx_rs::Array;
use std::{collections::HashMap, path::PathBuf};

/// `models/fixtures/<relative>` in this repository.
pub fn fixture_path(relative: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../models/fixtures")
        .join(relative)
}

/// Every tensor of the safetensors file `models/fixtures/<relative>`, by name.
pub fn load_fixture(relative: &str) -> HashMap<String, Array> {
    let path = fixture_path(relative);
    Array::load_safetensors(&path).unwrap_or_else(|error| {
        panic!("cannot load the reference tensors {}: {error} (they are committed; restore them with `git checkout models/fixtures`)", path.display())
    })
}

/// `models/<name>/` when that model has been fetched (`cargo xtask models fetch`), else `None`
/// after printing why the calling test checks nothing.
pub fn fetched_model_dir(name: &str) -> Option<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../models")
        .join(name);
    if dir.join("config.json").is_file() {
        return Some(dir);
    }
    eprintln!("skipped: models/{name} is absent; run `cargo xtask models fetch` first (check-solutions and CI always do)");
    None
}
