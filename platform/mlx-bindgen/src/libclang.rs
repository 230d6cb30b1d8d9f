//! The libclang bindgen loads: `LIBCLANG_PATH` if set, else the pinned wheel from PyPI, downloaded
//! by pip with hashes and unpacked once under the target directory.

use anyhow::{bail, Context, Result};
use std::{
    env, fs,
    path::{Path, PathBuf},
    process::Command,
};

const VERSION: &str = "18.1.1";

/// Points `LIBCLANG_PATH` at a libclang, fetching the pinned one if needed.
pub fn ensure_loadable(target_dir: &Path) -> Result<()> {
    if env::var_os("LIBCLANG_PATH").is_some() {
        eprintln!(
            "using the libclang in LIBCLANG_PATH (the shipped files come from libclang {VERSION})"
        );
        return Ok(());
    }
    let target_dir =
        env::var_os("CARGO_TARGET_DIR").map_or(target_dir.to_path_buf(), PathBuf::from);
    let unpacked = target_dir.join(format!("libclang-{VERSION}"));
    if !unpacked.exists() {
        unpack(
            &download(&target_dir.join("libclang-downloads"))?,
            &unpacked,
        )?;
    }
    let native = unpacked.join(format!("libclang-{VERSION}.data/platlib/clang/native"));
    if !native.is_dir() {
        bail!(
            "{} holds no libclang; delete it and run again",
            unpacked.display()
        );
    }
    // Read by clang-sys when bindgen first loads libclang, below; no other thread runs yet.
    env::set_var("LIBCLANG_PATH", native);
    Ok(())
}

fn python() -> String {
    env::var("PYTHON").unwrap_or_else(|_| "python3".into())
}

fn download(downloads: &Path) -> Result<PathBuf> {
    let requirements = Path::new(env!("CARGO_MANIFEST_DIR")).join("requirements/libclang.txt");
    eprintln!("downloading libclang {VERSION} from PyPI (pip, pinned hashes)");
    let status = Command::new(python())
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
        .status()
        .context("could not start pip (set PYTHON to a Python with pip)")?;
    if !status.success() {
        bail!("pip could not download libclang=={VERSION}; or set LIBCLANG_PATH to a libclang");
    }
    fs::read_dir(downloads)?
        .flatten()
        .map(|entry| entry.path())
        .find(|path| {
            let name = path.file_name().unwrap_or_default().to_string_lossy();
            name.starts_with(&format!("libclang-{VERSION}-")) && name.ends_with(".whl")
        })
        .context("pip reported success but left no libclang wheel")
}

/// Unpacks into a temporary sibling, then renames it into place: never a half-unpacked libclang.
fn unpack(wheel: &Path, unpacked: &Path) -> Result<()> {
    let staging = unpacked.with_extension(format!("partial-{}", std::process::id()));
    let _ = fs::remove_dir_all(&staging);
    let status = Command::new(python())
        .args(["-m", "zipfile", "--extract"])
        .arg(wheel)
        .arg(&staging)
        .status()
        .context("could not start python to unpack libclang")?;
    if !status.success() {
        bail!("could not unpack {}", wheel.display());
    }
    fs::rename(&staging, unpacked)
        .with_context(|| format!("could not move libclang into {}", unpacked.display()))
}
