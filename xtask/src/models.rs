//! The model the other commands need, made ready by tools/model-convert (`cargo xtask models`).

use crate::tools;
use anyhow::{ensure, Result};
use std::path::PathBuf;

/// Makes the model `name` (or the default) ready, instantly when it already is, and returns its
/// HF-layout directory: `model-convert ensure [NAME]` prints it.
pub fn ready_model_dir(name: Option<&str>) -> Result<PathBuf> {
    let mut command = tools::model_convert();
    command.arg("ensure").args(name);
    let stdout = tools::output(&mut command)?;
    let dir = stdout.trim_end();
    ensure!(
        !dir.is_empty(),
        "`model-convert ensure` printed no model directory"
    );
    Ok(PathBuf::from(dir))
}
