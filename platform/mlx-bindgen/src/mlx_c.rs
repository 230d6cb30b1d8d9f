//! Where the mlx-c headers are: in the upstream mlx-sys 0.7.0 package, which cargo fetches into
//! its registry when asked for the metadata of the bridge's `upstream/Cargo.toml` (as the bridge's
//! build script does).

use anyhow::{bail, Context, Result};
use std::{
    path::{Path, PathBuf},
    process::Command,
};

pub fn headers_root(bridge: &Path) -> Result<PathBuf> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let output = Command::new(cargo)
        .args(["metadata", "--format-version", "1", "--locked"])
        .arg("--manifest-path")
        .arg(bridge.join("upstream/Cargo.toml"))
        .output()
        .context("could not run cargo metadata")?;
    if !output.status.success() {
        bail!(
            "cargo could not fetch the mlx-c sources: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    let metadata: serde_json::Value =
        serde_json::from_slice(&output.stdout).context("cargo metadata printed invalid JSON")?;
    let manifest = metadata["packages"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|package| package["name"] == "mlx-sys" && package["version"] == "0.7.0")
        .and_then(|package| package["manifest_path"].as_str())
        .context("cargo metadata did not list mlx-sys 0.7.0")?;
    Ok(Path::new(manifest).with_file_name("src").join("mlx-c"))
}
