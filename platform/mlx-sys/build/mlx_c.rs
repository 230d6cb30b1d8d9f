//! mlx-c 0.7.0: its sources come from the upstream mlx-sys package on crates.io (fetched by
//! cargo itself), and are compiled into a static library against the chosen MLX install.

use crate::{mlx_install::MlxInstall, Failure, Result, Target};
use std::{
    env,
    path::{Path, PathBuf},
    process::Command,
};

/// Asks cargo for the upstream mlx-sys package described by `upstream/Cargo.toml`; cargo downloads
/// it into its registry cache if needed and reports where it lives. Returns the mlx-c root.
pub fn locate_sources() -> Result<PathBuf> {
    let cargo = env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("upstream/Cargo.toml");
    let output = Command::new(cargo)
        .args([
            "metadata",
            "--format-version",
            "1",
            "--locked",
            "--manifest-path",
        ])
        .arg(&manifest)
        .output()
        .map_err(|error| {
            Failure::new(
                format!("could not run cargo metadata: {error}"),
                "check CARGO",
            )
        })?;
    let fetch_fix =
        "check the connection to crates.io (cargo fetches the mlx-c sources), then build again";
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let last_line = stderr
            .lines()
            .rfind(|line| !line.trim().is_empty())
            .unwrap_or("");
        return Err(Failure::new(
            format!("cargo could not fetch the mlx-c sources: {last_line}"),
            fetch_fix,
        ));
    }
    let metadata: serde_json::Value = serde_json::from_slice(&output.stdout).map_err(|error| {
        Failure::new(
            format!("cargo metadata printed invalid JSON: {error}"),
            fetch_fix,
        )
    })?;
    let upstream_manifest = metadata["packages"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|package| package["name"] == "mlx-sys" && package["version"] == "0.7.0")
        .and_then(|package| package["manifest_path"].as_str())
        .ok_or_else(|| Failure::new("cargo metadata did not list mlx-sys 0.7.0", fetch_fix))?;
    let root = Path::new(upstream_manifest)
        .with_file_name("src")
        .join("mlx-c");
    println!(
        "cargo:rerun-if-changed={}",
        root.join("CMakeLists.txt").display()
    );
    Ok(root)
}

/// The sources mlx-c's own CMakeLists.txt compiles (its `mlxc-src` list), so the bridge
/// builds exactly what upstream builds.
fn source_files(root: &Path) -> Result<Vec<PathBuf>> {
    let cmake = std::fs::read_to_string(root.join("CMakeLists.txt")).map_err(|error| {
        Failure::new(
            format!("cannot read mlx-c's CMakeLists.txt: {error}"),
            "run `cargo clean -p mlx-sys`",
        )
    })?;
    let list = cmake
        .split("set(mlxc-src")
        .nth(1)
        .and_then(|rest| rest.split(')').next())
        .unwrap_or_default();
    let files: Vec<PathBuf> = list
        .lines()
        .map(str::trim)
        .filter_map(|line| line.strip_prefix("${CMAKE_CURRENT_LIST_DIR}/"))
        .map(|relative| root.join(relative))
        .collect();
    if files.is_empty() {
        return Err(Failure::new(
            "found no sources in mlx-c's CMakeLists.txt",
            "report this as a bug",
        ));
    }
    Ok(files)
}

pub fn compile(root: &Path, mlx: &MlxInstall, target: &Target) -> Result<()> {
    let compat = Path::new(env!("CARGO_MANIFEST_DIR")).join("compat");
    let mut build = cc::Build::new();
    build
        .cpp(true)
        .std("c++20")
        .include(root)
        .include(mlx.include_dir())
        .flag("-include")
        .flag(compat.join("format_polyfill.h").to_string_lossy().as_ref())
        .warnings(false)
        .cargo_warnings(false)
        .files(source_files(root)?);
    if !target.is_aarch64 {
        build.file(compat.join("half_accessors.cpp"));
    }
    if !target.is_macos {
        build.file(compat.join("mach_time.cpp"));
    }
    build.try_compile("mlxc").map_err(|error| {
        Failure::new(
            format!("compiling mlx-c against MLX at {} failed: {error}", mlx.prefix.display()),
            "check that MLX is version 0.32.2 and the C++ compiler supports C++20 (g++ 12 or later)",
        )
    })
}
