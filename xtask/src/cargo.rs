//! Running cargo from xtask: the same cargo that runs us, from the workspace root.

use anyhow::{bail, Context, Result};
use std::{
    path::{Path, PathBuf},
    process::Command,
};

/// The workspace root (the parent of xtask/).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the workspace")
        .to_path_buf()
}

/// A `cargo` command started in the workspace root.
pub fn command() -> Command {
    let mut command = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    command.current_dir(workspace_root());
    command
}

/// Runs `command`, streaming its output, and fails with `what` if it fails.
pub fn run(mut command: Command, what: &str) -> Result<()> {
    let status = command
        .status()
        .with_context(|| format!("could not start cargo to {what}"))?;
    if !status.success() {
        bail!("{what} failed ({status})");
    }
    Ok(())
}

/// Where cargo builds: `CARGO_TARGET_DIR`, or target/ in the workspace root.
pub fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target"))
}

/// Bytes free on the disk that holds the target dir (the workspace's disk before the first build);
/// `None` where the system cannot tell.
pub fn free_disk_bytes() -> Option<u64> {
    let target = target_dir();
    let on = if target.exists() {
        target
    } else {
        workspace_root()
    };
    fs4::available_space(on).ok()
}

/// Below this, a failed build is more likely a full disk than a compile error.
const NEARLY_FULL: u64 = 1 << 30;

/// When the disk that cargo builds on is (nearly) full: what to tell whoever saw a build fail,
/// since cargo's own "No space left on device" is easily lost among the errors it causes.
pub fn full_disk_hint() -> Option<String> {
    let free = free_disk_bytes()?;
    (free < NEARLY_FULL).then(|| {
        format!(
            "the disk holding {} is full ({} MiB free): free some space, or set CARGO_TARGET_DIR \
             to a folder on a larger disk, then run again",
            target_dir().display(),
            free >> 20
        )
    })
}
