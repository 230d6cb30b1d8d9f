//! The Rust declarations of the mlx-c headers: generated ahead of time by platform/mlx-bindgen,
//! one file per target under `bindings/`, so that building the bridge needs no libclang.

use crate::{Failure, Result, Target};
use std::path::{Path, PathBuf};

/// The shipped bindings for the target; lib.rs includes the file named by `MLX_SYS_BINDINGS`.
pub fn shipped(target: &Target) -> Result<PathBuf> {
    let bindings = Path::new(env!("CARGO_MANIFEST_DIR")).join("bindings");
    let file = bindings.join(format!("{}.rs", target.triple));
    if !file.exists() {
        return Err(Failure::new(
            format!(
                "there are no mlx-c bindings for the target {}: MLX has builds for x86_64 and \
                 aarch64 Linux and for aarch64 macOS",
                target.triple
            ),
            "build for one of those targets",
        ));
    }
    Ok(file)
}
