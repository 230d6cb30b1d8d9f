//! System packages the bridge needs, each checked up front so a missing one is named plainly.

use crate::{Failure, Result};
use std::process::{Command, Stdio};

fn succeeds(program: &str, args: &[&str]) -> bool {
    Command::new(program)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success())
}

/// A C++ compiler for mlx-c.
pub fn check_compiler() -> Result<()> {
    let compiler = cc::Build::new().cpp(true).get_compiler();
    let compiler_path = compiler.path().to_string_lossy().into_owned();
    if !succeeds(&compiler_path, &["--version"]) {
        return Err(Failure::new(
            format!("no C++ compiler found (tried `{compiler_path}`); mlx-c is C++20"),
            "apt-get install g++   (macOS: xcode-select --install)",
        ));
    }
    Ok(())
}

/// pip downloads the MLX wheel; only needed when MLX_DIR is not set and nothing is cached.
pub fn check_pip(python: &str) -> Result<()> {
    if succeeds(python, &["-m", "pip", "--version"]) {
        return Ok(());
    }
    Err(Failure::new(
        format!("`{python} -m pip` does not run; pip downloads the MLX wheel from PyPI"),
        "apt-get install python3-pip (or set PYTHON to a Python with pip), \
         or set MLX_DIR to an existing MLX install to build offline",
    ))
}
