//! `cargo xtask doctor`: builds and runs platform/mlx-doctor, which links MLX.

use crate::cargo;
use anyhow::Result;

pub fn run(bench: bool) -> Result<()> {
    let mut command = cargo::command();
    command.args([
        "run",
        "--quiet",
        "--release",
        "--package",
        "mlx-doctor",
        "--",
    ]);
    if bench {
        command.arg("--bench");
    }
    cargo::run(command, "the MLX check")
}
