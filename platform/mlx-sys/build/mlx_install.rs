//! Where MLX comes from: `MLX_DIR` (an existing install), or the official wheel for the target,
//! downloaded once by pip with pinned hashes and unpacked into a cache under cargo's target dir.

use crate::{blas, pypi, Failure, Result, Target};
use std::{
    env, fs,
    path::{Path, PathBuf},
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
    let downloads = cache.join("downloads");
    // Named for what is inside: on Linux, MLX with OpenBLAS in place of its reference BLAS.
    let name = if target.is_macos {
        format!("{}-{MLX_VERSION}", backend.package())
    } else {
        format!(
            "{}-{MLX_VERSION}-with-{}-{}",
            backend.package(),
            blas::PACKAGE,
            blas::VERSION
        )
    };
    let unpacked = cache.join(name);
    if !unpacked.exists() {
        let wheel = pypi::download(backend.package(), MLX_VERSION, &downloads)?;
        unpack_wheel(&wheel, &unpacked, target, &downloads, out_dir)?;
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

/// Unpacks into a temporary sibling and renames it into place, so an interrupted build never
/// leaves a cache entry that looks complete. Two builds at once (debug and release) may both
/// unpack: the first rename wins and the other build uses its copy.
fn unpack_wheel(
    wheel: &Path,
    unpacked: &Path,
    target: &Target,
    downloads: &Path,
    out_dir: &Path,
) -> Result<()> {
    let name = unpacked.file_name().unwrap_or_default().to_string_lossy();
    let staging = unpacked.with_file_name(format!("{name}.partial-{}", std::process::id()));
    let _ = fs::remove_dir_all(&staging);
    pypi::extract(wheel, &staging)?;
    if !target.is_macos {
        blas::replace_reference_blas(&staging, downloads, out_dir)?;
    }
    match fs::rename(&staging, unpacked) {
        Ok(()) => Ok(()),
        Err(_) if unpacked.join("mlx").is_dir() => {
            let _ = fs::remove_dir_all(&staging);
            Ok(())
        }
        Err(error) => Err(Failure::new(
            format!("could not move the unpacked wheel into place: {error}"),
            "delete the cache folder and build again",
        )),
    }
}
