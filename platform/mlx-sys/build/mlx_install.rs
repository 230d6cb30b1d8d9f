//! Where MLX comes from: `MLX_DIR` (an existing install), or the official wheel for the target,
//! downloaded once by pip with pinned hashes and unpacked into a cache under cargo's target dir.

use crate::{prerequisites, Failure, Result, Target};
use std::{
    env, fs,
    path::{Path, PathBuf},
    process::Command,
};

/// The MLX release mlx-c 0.7.0 is written against.
const MLX_VERSION: &str = "0.32.2";

#[derive(Clone, Copy)]
pub enum Backend {
    Cpu,
    Cuda,
    Metal,
}

impl Backend {
    pub fn name(self) -> &'static str {
        match self {
            Backend::Cpu => "cpu",
            Backend::Cuda => "cuda",
            Backend::Metal => "metal",
        }
    }

    /// The PyPI package holding this backend's build of MLX.
    fn package(self) -> &'static str {
        match self {
            Backend::Cpu => "mlx-cpu",
            Backend::Cuda => "mlx-cuda-13",
            Backend::Metal => "mlx-metal",
        }
    }

    fn choose(target: &Target) -> Result<Backend> {
        if target.is_macos {
            if !target.is_aarch64 {
                return Err(Failure::new(
                    "MLX on macOS needs Apple Silicon (there is no x86_64 macOS wheel)",
                    "build on an arm64 Mac, or on Linux",
                ));
            }
            return Ok(Backend::Metal);
        }
        let cuda_feature = env::var_os("CARGO_FEATURE_CUDA").is_some();
        match env::var("MLX_BACKEND").ok().as_deref() {
            Some("cuda") => Ok(Backend::Cuda),
            None | Some("") if cuda_feature => Ok(Backend::Cuda),
            None | Some("") | Some("cpu") => Ok(Backend::Cpu),
            Some(other) => Err(Failure::new(
                format!("MLX_BACKEND={other} is not a backend this bridge knows"),
                "set MLX_BACKEND to `cpu` (default) or `cuda`, or unset it",
            )),
        }
    }
}

/// An MLX install: `include/mlx/mlx.h` and `lib/libmlx.{so,dylib}` under `prefix`.
pub struct MlxInstall {
    pub prefix: PathBuf,
    pub backend: Backend,
}

impl MlxInstall {
    pub fn include_dir(&self) -> PathBuf {
        self.prefix.join("include")
    }

    pub fn lib_dir(&self) -> PathBuf {
        self.prefix.join("lib")
    }

    fn validate(self, origin: &str) -> Result<Self> {
        let header = self.include_dir().join("mlx/mlx.h");
        let has_library = ["libmlx.so", "libmlx.dylib"]
            .iter()
            .any(|name| self.lib_dir().join(name).exists());
        if !header.exists() || !has_library {
            return Err(Failure::new(
                format!(
                    "{origin} {} is not an MLX install (expected include/mlx/mlx.h and lib/libmlx.so or .dylib)",
                    self.prefix.display()
                ),
                "point MLX_DIR at the `mlx` folder of an installed MLX wheel (site-packages/mlx), or unset it",
            ));
        }
        Ok(self)
    }
}

/// Makes `<profile dir>/mlx` (e.g. `target/debug/mlx`) point at `mlx`, replacing any earlier link
/// atomically. Programs find libmlx through it: cargo puts link paths inside the profile dir on
/// the library path of `cargo run`/`cargo test`, and binaries carry `$ORIGIN`-relative rpaths to it
/// (see .cargo/config.toml).
pub fn activate(mlx: &MlxInstall, out_dir: &Path) -> Result<MlxInstall> {
    let profile_dir = out_dir.ancestors().nth(3).unwrap_or(out_dir);
    let link = profile_dir.join("mlx");
    let staging = profile_dir.join(format!("mlx.partial-{}", std::process::id()));
    let _ = fs::remove_file(&staging);
    std::os::unix::fs::symlink(&mlx.prefix, &staging)
        .and_then(|()| fs::rename(&staging, &link))
        .map_err(|error| {
            Failure::new(
                format!(
                    "could not link {} to {}: {error}",
                    link.display(),
                    mlx.prefix.display()
                ),
                format!("remove {} and build again", link.display()),
            )
        })?;
    Ok(MlxInstall {
        prefix: link,
        backend: mlx.backend,
    })
}

pub fn locate(target: &Target, out_dir: &Path) -> Result<MlxInstall> {
    let backend = Backend::choose(target)?;
    if let Some(dir) = env::var_os("MLX_DIR") {
        return MlxInstall {
            prefix: PathBuf::from(dir),
            backend,
        }
        .validate("MLX_DIR");
    }
    let cache = cache_dir(out_dir);
    let unpacked = cache.join(format!("{}-{MLX_VERSION}", backend.package()));
    if !unpacked.exists() {
        let wheel = download_wheel(backend, &cache.join("downloads"))?;
        unpack_wheel(&wheel, &unpacked, target)?;
    }
    MlxInstall {
        prefix: unpacked.join("mlx"),
        backend,
    }
    .validate("the unpacked wheel")
}

/// `MLX_CACHE_DIR`, or `mlx/` in cargo's target directory (the folder holding CACHEDIR.TAG),
/// so that debug and release builds share one download and `cargo clean` removes it.
fn cache_dir(out_dir: &Path) -> PathBuf {
    if let Some(dir) = env::var_os("MLX_CACHE_DIR") {
        return PathBuf::from(dir);
    }
    let target_dir = out_dir
        .ancestors()
        .find(|dir| dir.join("CACHEDIR.TAG").exists())
        .unwrap_or(out_dir);
    target_dir.join("mlx")
}

/// The Python whose pip downloads and unpacks wheels: `PYTHON`, else `python3`.
fn python() -> String {
    env::var("PYTHON").unwrap_or_else(|_| "python3".into())
}

fn download_wheel(backend: Backend, downloads: &Path) -> Result<PathBuf> {
    let python = python();
    prerequisites::check_pip(&python)?;
    let requirements = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("requirements")
        .join(format!("{}.txt", backend.package()));
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
            format!("pip could not download {}=={MLX_VERSION}: {last_line}", backend.package()),
            "check the connection to PyPI, or set MLX_DIR to an existing MLX install to build offline",
        ));
    }
    let prefix = format!("{}-{MLX_VERSION}-", backend.package().replace('-', "_"));
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
                "pip reported success but left no wheel",
                "run the build again",
            )
        })
}

/// Unpacks into a temporary sibling and renames it into place, so an interrupted build never
/// leaves a cache entry that looks complete.
fn unpack_wheel(wheel: &Path, unpacked: &Path, target: &Target) -> Result<()> {
    let python = python();
    let staging = unpacked.with_extension(format!("partial-{}", std::process::id()));
    let _ = fs::remove_dir_all(&staging);
    let failed = |what: String| Failure::new(what, "delete the cache folder and build again");
    let status = Command::new(&python)
        .args(["-m", "zipfile", "--extract"])
        .arg(wheel)
        .arg(&staging)
        .status()
        .map_err(|error| failed(format!("could not unpack {}: {error}", wheel.display())))?;
    if !status.success() {
        return Err(failed(format!("could not unpack {}", wheel.display())));
    }
    if !target.is_macos {
        use_system_openblas(&staging)?;
    }
    fs::rename(&staging, unpacked).map_err(|error| {
        failed(format!(
            "could not move the unpacked wheel into place: {error}"
        ))
    })
}

/// The Linux wheels load their bundled reference BLAS (`<pkg>.libs/libblas-*.so*`) by file name
/// through libmlx's rpath. Replacing that file with a link to OpenBLAS makes every program using
/// this MLX run its f32 GEMMs on OpenBLAS (~35x faster here), with no change to how they link.
fn use_system_openblas(staging: &Path) -> Result<()> {
    let openblas = prerequisites::find_openblas()?;
    let bundled = fs::read_dir(staging)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|entry| entry.file_name().to_string_lossy().ends_with(".libs"))
        .flat_map(|libs| fs::read_dir(libs.path()).into_iter().flatten().flatten())
        .map(|entry| entry.path())
        .filter(|path| {
            path.file_name()
                .unwrap_or_default()
                .to_string_lossy()
                .starts_with("libblas-")
        });
    for reference_blas in bundled {
        let replace = fs::remove_file(&reference_blas)
            .and_then(|()| std::os::unix::fs::symlink(&openblas, &reference_blas));
        replace.map_err(|error| {
            Failure::new(
                format!(
                    "could not link {} to OpenBLAS: {error}",
                    reference_blas.display()
                ),
                "delete the cache folder and build again",
            )
        })?;
    }
    Ok(())
}
