//! MLX's Linux wheels carry the reference BLAS (about 5 GFLOP/s for an f32 GEMM here), which libmlx
//! and the bundled LAPACK load by file name (`<package>.libs/libblas-<hash>.so.3.10.0`) through
//! their rpath. The bridge puts OpenBLAS from PyPI in its place: scipy-openblas32, the build numpy
//! and scipy ship, whose symbols all carry a `scipy_` prefix. A library with the reference BLAS's
//! file name and functions, each a jump to OpenBLAS's, stands in for it; every program using this
//! MLX then runs its GEMMs on OpenBLAS, with no change to how it links.

use crate::{elf, pypi, Failure, Result};
use std::{
    collections::HashSet,
    fs,
    path::{Path, PathBuf},
    process::Command,
};

pub const PACKAGE: &str = "scipy-openblas32";
pub const VERSION: &str = "0.3.34.481.3";

/// Where the wheel puts OpenBLAS, relative to the root of an unpacked MLX wheel.
const OPENBLAS_DIR: &str = "scipy_openblas32/lib";
const OPENBLAS_FILE: &str = "libscipy_openblas.so";

/// Replaces every bundled reference BLAS in the unpacked MLX wheel at `staging` with a forwarder
/// to OpenBLAS, unpacking scipy-openblas32 beside MLX (as pip would in site-packages).
pub fn replace_reference_blas(staging: &Path, downloads: &Path, out_dir: &Path) -> Result<()> {
    let bundled = bundled_reference_blas(staging);
    if bundled.is_empty() {
        return Ok(());
    }
    pypi::extract(&pypi::download(PACKAGE, VERSION, downloads)?, staging)?;
    let openblas = staging.join(OPENBLAS_DIR).join(OPENBLAS_FILE);
    let provided: HashSet<String> = functions_of(&openblas)?
        .into_iter()
        .filter_map(|name| name.strip_prefix("scipy_").map(str::to_owned))
        .collect();
    for reference in bundled {
        // All but the reference CBLAS's internal helpers (`sdotsub_`, ...) and its error
        // handler, which nothing outside it calls.
        let forwarded: Vec<String> = functions_of(&reference)?
            .into_iter()
            .filter(|name| provided.contains(name))
            .collect();
        compile_forwarder(&reference, &forwarded, out_dir)?;
    }
    Ok(())
}

/// `<package>.libs/libblas-*.so*` of the unpacked wheel (auditwheel's folder of bundled libraries).
fn bundled_reference_blas(staging: &Path) -> Vec<PathBuf> {
    fs::read_dir(staging)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|entry| entry.file_name().to_string_lossy().ends_with(".libs"))
        .flat_map(|libs| fs::read_dir(libs.path()).into_iter().flatten().flatten())
        .map(|entry| entry.path())
        .filter(|path| {
            let name = path.file_name().unwrap_or_default().to_string_lossy();
            name.starts_with("libblas-") && name.contains(".so")
        })
        .collect()
}

fn functions_of(library: &Path) -> Result<Vec<String>> {
    elf::exported_functions(library).ok_or_else(|| {
        Failure::new(
            format!("{} is not a 64-bit ELF shared library", library.display()),
            "delete the cache folder and build again",
        )
    })
}

/// Builds the stand-in for `reference` over it: same file name and soname, one `FORWARD` line per
/// function, OpenBLAS found through an rpath relative to the file itself.
fn compile_forwarder(reference: &Path, functions: &[String], out_dir: &Path) -> Result<()> {
    let failed = |what: String| {
        Failure::new(
            what,
            "check that the C compiler works (cc), then build again",
        )
    };
    let file_name = reference
        .file_name()
        .unwrap_or_default()
        .to_string_lossy()
        .into_owned();
    let source = out_dir.join("blas_forward.c");
    let mut text = String::from("#include \"blas_forward.h\"\n");
    for function in functions {
        text.push_str(&format!("FORWARD({function})\n"));
    }
    fs::write(&source, text)
        .map_err(|error| failed(format!("cannot write {}: {error}", source.display())))?;
    let libs = reference.parent().expect("a bundled library has a folder");
    let openblas_dir = libs
        .parent()
        .expect("the .libs folder is in the wheel")
        .join(OPENBLAS_DIR);
    let built = out_dir.join(&file_name);
    let compat = Path::new(env!("CARGO_MANIFEST_DIR")).join("compat");
    let mut command: Command = cc::Build::new()
        .warnings(false)
        .cargo_metadata(false)
        .get_compiler()
        .to_command();
    command
        .arg("-shared")
        .arg(format!("-I{}", compat.display()))
        .arg(&source)
        .arg("-o")
        .arg(&built)
        .arg(format!("-L{}", openblas_dir.display()))
        .arg(format!("-l:{OPENBLAS_FILE}"))
        .arg(format!("-Wl,-soname,{file_name}"))
        .arg(format!("-Wl,-rpath,$ORIGIN/../{OPENBLAS_DIR}"));
    let output = command
        .output()
        .map_err(|error| failed(format!("could not run the C compiler: {error}")))?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let first_error = stderr
            .lines()
            .find(|line| line.contains("error"))
            .unwrap_or("");
        return Err(failed(format!(
            "could not build the OpenBLAS stand-in for {file_name}: {first_error}"
        )));
    }
    fs::rename(&built, reference)
        .or_else(|_| fs::copy(&built, reference).map(drop))
        .map_err(|error| {
            failed(format!(
                "could not replace {}: {error}",
                reference.display()
            ))
        })
}
