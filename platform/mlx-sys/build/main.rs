//! Builds the MLX bridge: finds MLX (a wheel from PyPI, or `MLX_DIR`), compiles mlx-c against it,
//! and picks the shipped bindings mlx-rs uses. Every failure ends in one message naming the fix.

mod bindings;
mod blas;
mod elf;
mod mlx_c;
mod mlx_install;
mod prerequisites;
mod pypi;

use std::{env, path::PathBuf, process};

/// A build failure a person can act on: what is wrong, then how to fix it.
pub struct Failure {
    problem: String,
    fix: String,
}

impl Failure {
    pub fn new(problem: impl Into<String>, fix: impl Into<String>) -> Self {
        Failure {
            problem: problem.into(),
            fix: fix.into(),
        }
    }
}

pub type Result<T> = std::result::Result<T, Failure>;

fn main() {
    if let Err(failure) = build() {
        eprintln!(
            "error: mlx-sys: {}\n  fix: {}",
            failure.problem, failure.fix
        );
        process::exit(1);
    }
}

fn build() -> Result<()> {
    for var in ["MLX_DIR", "MLX_BACKEND", "MLX_CACHE_DIR"] {
        println!("cargo:rerun-if-env-changed={var}");
    }
    println!("cargo:rerun-if-changed=bindings");
    println!("cargo:rerun-if-changed=build");
    println!("cargo:rerun-if-changed=compat");
    println!("cargo:rerun-if-changed=requirements");

    let out_dir = PathBuf::from(env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    let target = Target::from_env();

    let bindings = bindings::shipped(&target)?;
    prerequisites::check_compiler()?;
    let mlx = mlx_install::locate(&target, &out_dir)?;
    let mlx = mlx_install::activate(&mlx, &out_dir)?;
    let sources = mlx_c::locate_sources()?;
    mlx_c::compile(&sources, &mlx, &target)?;

    println!("cargo:rustc-env=MLX_SYS_BINDINGS={}", bindings.display());
    println!("cargo:rustc-link-search=native={}", mlx.lib_dir().display());
    println!("cargo:rustc-link-lib=dylib=mlx");
    // Read by dependents' build scripts as DEP_MLX_LIB_DIR (to set an rpath on binaries).
    println!("cargo:lib_dir={}", mlx.lib_dir().display());
    println!("cargo:backend={}", mlx.backend.name());
    Ok(())
}

/// The parts of the compilation target the bridge cares about.
pub struct Target {
    /// As Rust spells it, e.g. `x86_64-unknown-linux-gnu`.
    pub triple: String,
    pub is_macos: bool,
    pub is_aarch64: bool,
}

impl Target {
    fn from_env() -> Self {
        let os = env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
        let arch = env::var("CARGO_CFG_TARGET_ARCH").unwrap_or_default();
        Target {
            triple: env::var("TARGET").unwrap_or_default(),
            is_macos: os == "macos",
            is_aarch64: arch == "aarch64",
        }
    }
}
