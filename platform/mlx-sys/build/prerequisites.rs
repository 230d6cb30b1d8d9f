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

/// MLX's Linux wheels carry the reference BLAS (about 5 GFLOP/s for f32 GEMM); the bridge
/// points them at the system OpenBLAS instead. Returns the OpenBLAS shared library.
pub fn find_openblas() -> Result<std::path::PathBuf> {
    let listing = Command::new("ldconfig")
        .arg("-p")
        .output()
        .or_else(|_| Command::new("/sbin/ldconfig").arg("-p").output())
        .map(|output| String::from_utf8_lossy(&output.stdout).into_owned())
        .unwrap_or_default();
    listing
        .lines()
        .filter(|line| line.trim_start().starts_with("libopenblas.so.0 "))
        .filter_map(|line| line.rsplit("=> ").next())
        .map(|path| std::path::PathBuf::from(path.trim()))
        .find(|path| path.exists())
        .ok_or_else(|| {
            Failure::new(
                "OpenBLAS was not found (libopenblas.so.0); MLX's own reference BLAS is ~30x slower",
                "apt-get install libopenblas0-pthread",
            )
        })
}
