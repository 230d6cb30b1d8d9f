//! `cargo xtask gpu`: the engine on a lent NVIDIA machine that has CUDA and PyTorch but no Rust
//! toolchain, and takes at most 64 MiB per call. `pack` builds everything here for MLX's CUDA
//! backend and packs it into one compressed payload split into parts; `stage N` puts part N and
//! the device script into the `.gpu/` folder of the checkout the device tool sends.
//! platform/cuda/NOTES.md gives the device calls that follow.

use crate::{cargo, chapters, models};
use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use std::{
    fs,
    io::{BufRead, BufReader, Read, Write},
    path::{Path, PathBuf},
    process::{Command, Stdio},
};

/// The chapters whose tests run on the GPU (with their solutions): every one that compares
/// against references without downloading anything.
const TESTED_CHAPTERS: &[&str] = &[
    "attention",
    "rope",
    "gqa",
    "rmsnorm-mlp",
    "load",
    "decode",
    "sampling",
    "kv-cache",
    "quantized-matmul",
    "continuous-batching",
    "paged-kv-cache",
];

/// What one device call may carry, the checkout included.
const CALL_LIMIT: u64 = 64 << 20;

#[derive(Args)]
pub struct GpuArgs {
    #[command(subcommand)]
    command: GpuCommand,
}

#[derive(Subcommand)]
enum GpuCommand {
    /// Build the engine, its benchmarks and the chapter tests for CUDA, and pack them with
    /// libmlx, the Python wheels and the SmolLM2 weights into payload parts.
    Pack {
        /// Cargo's target directory for the CUDA build (kept apart from the CPU build).
        #[arg(long, value_name = "DIR")]
        target_dir: Option<PathBuf>,
        /// The size of one payload part: what a call carries besides the checkout.
        #[arg(long, default_value_t = 56)]
        part_mib: u64,
        /// Leave out the real SmolLM2 weights (one call fewer; its reference tests then skip).
        #[arg(long)]
        without_smollm2: bool,
    },
    /// Put payload part N (from 1) and the device script into CHECKOUT/.gpu/ for one call; with
    /// N = 0 only the script, for further runs on a machine that holds the whole payload.
    Stage {
        part: usize,
        /// The checkout the device tool sends (default: this repository's main worktree).
        #[arg(long, value_name = "DIR")]
        checkout: Option<PathBuf>,
        #[arg(long, value_name = "DIR")]
        target_dir: Option<PathBuf>,
    },
}

pub fn run(args: GpuArgs) -> Result<()> {
    match args.command {
        GpuCommand::Pack {
            target_dir,
            part_mib,
            without_smollm2,
        } => pack(
            &target_dir_or_default(target_dir),
            part_mib,
            !without_smollm2,
        ),
        GpuCommand::Stage {
            part,
            checkout,
            target_dir,
        } => stage(part, checkout, &target_dir_or_default(target_dir)),
    }
}

fn target_dir_or_default(dir: Option<PathBuf>) -> PathBuf {
    dir.unwrap_or_else(|| cargo::workspace_root().join("target").join("cuda"))
}

fn payload_dir(target: &Path) -> PathBuf {
    target.join("gpu")
}

fn pack(target: &Path, part_mib: u64, with_smollm2: bool) -> Result<()> {
    let target = std::path::absolute(target)?;
    let staging = payload_dir(&target).join("payload");
    if staging.exists() {
        fs::remove_dir_all(&staging)
            .with_context(|| format!("cannot empty {}", staging.display()))?;
    }
    fs::create_dir_all(&staging)?;

    let worktree = cargo::workspace_root();
    forget_other_checkout(&target, &worktree)?;
    eprintln!("[1/6] building the engine for CUDA");
    let mut build = cuda_cargo(&target);
    build.args([
        "build",
        "--release",
        "--package",
        "engine",
        "--features",
        "solutions",
    ]);
    cargo::run(build, "building the engine for CUDA")?;
    eprintln!("[2/6] building the test executables for CUDA");
    let tests = build_tests(&target)?;

    eprintln!("[3/6] copying binaries, tests and the worktree");
    let release = target.join("release");
    let binaries = staging.join("target/release");
    fs::create_dir_all(binaries.join("deps"))?;
    for name in ["bench", "tiny-llm", "mlx-doctor"] {
        strip_into(&release.join(name), &binaries.join(name))?;
    }
    let mut listing = String::new();
    for test in &tests {
        let name = file_name(&test.executable);
        strip_into(&test.executable, &binaries.join("deps").join(&name))?;
        listing += &format!("{} {} {name}\n", test.package, test.manifest_dir.display());
    }
    fs::write(staging.join("tests.txt"), listing)?;
    copy_worktree(&worktree, &staging.join("worktree"))?;
    fs::write(
        staging.join("paths"),
        format!(
            "worktree={}\ntarget={}\n",
            worktree.display(),
            target.display()
        ),
    )?;

    eprintln!("[4/6] unpacking libmlx (CUDA) and downloading the Python wheels");
    unpack_cuda_wheel(&target, &staging.join("mlx-cuda"))?;
    download_wheels(&staging.join("wheels"))?;
    if with_smollm2 {
        let float32 = models::ready_model_dir(None)?;
        let quantized = models::ready_model_dir(Some("smollm2-135m-instruct-4bit"))?;
        copy_dir(&quantized, &staging.join("smollm2-4bit"))?;
        fs::copy(
            float32.join("config.json"),
            staging.join("smollm2-float32-config.json"),
        )?;
    }

    eprintln!("[5/6] compressing (xz, a few minutes)");
    let archive = payload_dir(&target).join("payload.tar.xz");
    compress(&staging, &archive)?;
    eprintln!("[6/6] splitting into parts of {part_mib} MiB");
    let parts = split(&archive, part_mib << 20)?;
    println!(
        "payload: {parts} parts in {}; next: `cargo xtask gpu stage 1` (platform/cuda/NOTES.md)",
        payload_dir(&target).display()
    );
    Ok(())
}

/// Cargo keeps a workspace crate built from another checkout of this repository when no file of
/// it is newer, with that checkout's paths compiled in (`env!("CARGO_MANIFEST_DIR")`: where the
/// tests find their fixtures), so the device would look for them there. When `target` was built
/// from another checkout, the workspace's own crates are cleaned (the registry's stay built).
fn forget_other_checkout(target: &Path, worktree: &Path) -> Result<()> {
    let marker = payload_dir(target).join("built-from");
    let current = worktree.display().to_string();
    match fs::read_to_string(&marker) {
        Ok(built_from) if built_from == current => return Ok(()),
        Err(_) if !target.join("release").exists() => {}
        _ => {
            eprintln!(
                "[0/6] {} was built from another checkout: rebuilding the workspace's crates",
                target.display()
            );
            let metadata = cargo::command()
                .args(["metadata", "--no-deps", "--format-version", "1"])
                .output()
                .context("cannot run cargo metadata")?;
            let metadata: serde_json::Value = serde_json::from_slice(&metadata.stdout)
                .context("cargo metadata printed no JSON")?;
            let mut clean = cuda_cargo(target);
            clean.args(["clean", "--release"]);
            for package in metadata["packages"].as_array().into_iter().flatten() {
                clean.args(["--package", package["name"].as_str().unwrap_or_default()]);
            }
            cargo::run(clean, "cleaning the workspace's crates")?;
        }
    }
    fs::create_dir_all(payload_dir(target))?;
    fs::write(&marker, current)?;
    Ok(())
}

/// cargo for the CUDA build: the bridge takes the mlx-cuda-13 wheel, into its own target dir.
fn cuda_cargo(target: &Path) -> Command {
    let mut command = cargo::command();
    command
        .env("MLX_BACKEND", "cuda")
        .env("CARGO_TARGET_DIR", target);
    command
}

/// A test executable and the package it tests.
struct TestExecutable {
    package: String,
    manifest_dir: PathBuf,
    executable: PathBuf,
}

/// Builds the tested chapters' tests (each with its solution and those of the chapters it
/// builds on, `solution-all`, as check-solutions runs them) and the bridge's, and lists the executables.
fn build_tests(target: &Path) -> Result<Vec<TestExecutable>> {
    let mut features = Vec::new();
    let mut command = cuda_cargo(target);
    command.args(["test", "--release", "--no-run", "--package", "mlx-doctor"]);
    // The custom-kernel bridge's tests run its kernel only where CUDA is.
    command.args(["--package", "mlx-custom-kernel"]);
    for name in TESTED_CHAPTERS {
        let chapter = chapters::find(name)?;
        command.args(["--package", &chapter.name]);
        features.push(chapter.all_solutions_feature());
    }
    command
        .args(["--features", &features.join(",")])
        .args(["--message-format", "json-render-diagnostics"])
        .stdout(Stdio::piped());
    let mut child = command.spawn().context("could not start cargo test")?;
    let stdout = child.stdout.take().expect("stdout is piped");
    let mut tests = Vec::new();
    for line in BufReader::new(stdout).lines() {
        // cargo's JSON messages, one a line; only test executables matter here.
        let message: serde_json::Value = serde_json::from_str(&line?).unwrap_or_default();
        let is_test = message["profile"]["test"].as_bool() == Some(true);
        let Some(executable) = message["executable"].as_str().filter(|_| is_test) else {
            continue;
        };
        let manifest = PathBuf::from(message["manifest_path"].as_str().unwrap_or_default());
        tests.push(TestExecutable {
            package: manifest.parent().map(file_name).unwrap_or_default(),
            manifest_dir: manifest.parent().unwrap_or(Path::new("/")).to_path_buf(),
            executable: executable.into(),
        });
    }
    if !child.wait()?.success() {
        bail!("building the tests for CUDA failed (see above)");
    }
    Ok(tests)
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .unwrap_or_default()
        .to_string_lossy()
        .into_owned()
}

/// Copies `from` to `to` without symbols: the device only runs it.
fn strip_into(from: &Path, to: &Path) -> Result<()> {
    let status = Command::new("strip")
        .arg("--strip-unneeded")
        .arg(from)
        .arg("-o")
        .arg(to)
        .status()
        .context("could not run strip (binutils)")?;
    if !status.success() {
        bail!("strip failed on {}", from.display());
    }
    Ok(())
}

/// What git sees of `checkout` (tracked files, and untracked ones it does not ignore): what the
/// device tool sends. Relative paths of files that exist (a deletion not yet staged is skipped).
fn checkout_files(checkout: &Path) -> Result<Vec<PathBuf>> {
    let output = Command::new("git")
        .arg("-C")
        .arg(checkout)
        .args([
            "ls-files",
            "-z",
            "--cached",
            "--others",
            "--exclude-standard",
        ])
        .output()
        .context("could not run git ls-files")?;
    if !output.status.success() {
        bail!("git ls-files failed in {}", checkout.display());
    }
    let mut files = Vec::new();
    for relative in output.stdout.split(|&byte| byte == 0) {
        let relative = PathBuf::from(std::str::from_utf8(relative)?);
        if !relative.as_os_str().is_empty() && checkout.join(&relative).is_file() {
            files.push(relative);
        }
    }
    Ok(files)
}

/// The worktree's files as git sees them: the device needs the test fixtures and scripts at the
/// paths compiled into the tests.
fn copy_worktree(worktree: &Path, to: &Path) -> Result<()> {
    for relative in checkout_files(worktree)? {
        let (source, destination) = (worktree.join(&relative), to.join(&relative));
        fs::create_dir_all(destination.parent().expect("a file has a parent"))?;
        fs::copy(&source, &destination)
            .with_context(|| format!("cannot copy {}", source.display()))?;
    }
    Ok(())
}

fn copy_dir(from: &Path, to: &Path) -> Result<()> {
    fs::create_dir_all(to)?;
    for entry in fs::read_dir(from).with_context(|| format!("cannot read {}", from.display()))? {
        let entry = entry?;
        if entry.file_type()?.is_file() {
            fs::copy(entry.path(), to.join(entry.file_name()))?;
        }
    }
    Ok(())
}

/// The mlx-cuda-13 wheel the bridge downloaded, unpacked as pip would lay it out (without its
/// metadata), with libmlx stripped. The original wheel, not the bridge's cache: there the
/// reference BLAS is the bridge's stand-in forwarding to OpenBLAS from PyPI, built for this machine.
fn unpack_cuda_wheel(target: &Path, to: &Path) -> Result<()> {
    let wheel = find_cuda_wheel(target)?;
    let file = fs::File::open(&wheel)?;
    let mut archive = zip::ZipArchive::new(file)
        .with_context(|| format!("{} is not a wheel", wheel.display()))?;
    for index in 0..archive.len() {
        let mut entry = archive.by_index(index)?;
        let Some(relative) = entry.enclosed_name() else {
            continue;
        };
        if entry.is_dir() || relative.starts_with("mlx_cuda_13-0.32.2.dist-info") {
            continue;
        }
        let destination = to.join(relative);
        fs::create_dir_all(destination.parent().expect("a file has a parent"))?;
        let mut bytes = Vec::new();
        entry.read_to_end(&mut bytes)?;
        fs::write(&destination, bytes)?;
    }
    let library = to.join("mlx/lib/libmlx.so");
    let unstripped = library.with_extension("so.full");
    fs::rename(&library, &unstripped)?;
    strip_into(&unstripped, &library)?;
    fs::remove_file(unstripped)?;
    Ok(())
}

fn find_cuda_wheel(target: &Path) -> Result<PathBuf> {
    let is_wheel = |path: &Path| {
        let name = file_name(path);
        name.starts_with("mlx_cuda_13-0.32.2-") && name.ends_with(".whl")
    };
    // The bridge's cache: MLX_CACHE_DIR, target/mlx, or its build script's OUT_DIR.
    let mut folders = vec![target.join("mlx/downloads")];
    if let Some(dir) = std::env::var_os("MLX_CACHE_DIR") {
        folders.push(PathBuf::from(dir).join("downloads"));
    }
    for build in fs::read_dir(target.join("release/build"))?.flatten() {
        folders.push(build.path().join("out/mlx/downloads"));
    }
    folders
        .iter()
        .flat_map(|folder| fs::read_dir(folder).into_iter().flatten().flatten())
        .map(|entry| entry.path())
        .find(|path| is_wheel(path))
        .context("found no mlx_cuda_13 wheel in the CUDA build's MLX cache")
}

/// The device's missing Python packages, hash-pinned, for its Python 3.12.
fn download_wheels(to: &Path) -> Result<()> {
    let requirements = cargo::workspace_root().join("platform/cuda/requirements-device.txt");
    let status = Command::new(std::env::var("PYTHON").unwrap_or_else(|_| "python3".into()))
        .args([
            "-m",
            "pip",
            "download",
            "--quiet",
            "--no-deps",
            "--only-binary=:all:",
        ])
        .args(["--python-version", "3.12", "--implementation", "cp"])
        .args(["--platform", "manylinux_2_35_x86_64", "--require-hashes"])
        .arg("--requirement")
        .arg(&requirements)
        .arg("--dest")
        .arg(to)
        .status()
        .context("could not start pip")?;
    if !status.success() {
        bail!(
            "pip could not download the wheels in {}",
            requirements.display()
        );
    }
    Ok(())
}

fn compress(staging: &Path, archive: &Path) -> Result<()> {
    let partial = archive.with_extension("partial");
    let output = fs::File::create(&partial)?;
    let mut tar = Command::new("tar")
        .arg("-C")
        .arg(staging)
        .args(["-cf", "-", "."])
        .stdout(Stdio::piped())
        .spawn()
        .context("could not run tar")?;
    let xz = Command::new("xz")
        .args(["-6", "-T0", "-c"])
        .stdin(tar.stdout.take().expect("stdout is piped"))
        .stdout(output)
        .status()
        .context("could not run xz")?;
    if !tar.wait()?.success() || !xz.success() {
        bail!("compressing {} failed", staging.display());
    }
    fs::rename(&partial, archive)?;
    Ok(())
}

/// Splits `archive` into `payload.part-01`, ... of `size` bytes beside it, and writes their
/// count to `parts`. Returns the count.
fn split(archive: &Path, size: u64) -> Result<usize> {
    let folder = archive.parent().expect("the archive is in a folder");
    for old in fs::read_dir(folder)?.flatten() {
        if file_name(&old.path()).starts_with("payload.part-") {
            fs::remove_file(old.path())?;
        }
    }
    let mut input = fs::File::open(archive)?;
    let mut count = 0;
    loop {
        let mut chunk = Vec::new();
        (&mut input).take(size).read_to_end(&mut chunk)?;
        if chunk.is_empty() {
            break;
        }
        count += 1;
        fs::File::create(folder.join(format!("payload.part-{count:02}")))?.write_all(&chunk)?;
    }
    fs::write(folder.join("parts"), format!("{count}\n"))?;
    Ok(count)
}

fn stage(part: usize, checkout: Option<PathBuf>, target: &Path) -> Result<()> {
    let payload = payload_dir(target);
    let parts: usize = fs::read_to_string(payload.join("parts"))
        .context("no payload yet: run `cargo xtask gpu pack` first")?
        .trim()
        .parse()?;
    if part > parts {
        bail!("the payload has parts 1 to {parts}, not {part}");
    }
    let checkout = match checkout {
        Some(dir) => dir,
        None => main_checkout()?,
    };
    exclude_gpu_folder(&checkout)?;
    let gpu = checkout.join(".gpu");
    if gpu.exists() {
        fs::remove_dir_all(&gpu)?;
    }
    fs::create_dir_all(&gpu)?;
    if part > 0 {
        let part_name = format!("payload.part-{part:02}");
        fs::copy(payload.join(&part_name), gpu.join(&part_name))?;
    }
    fs::copy(payload.join("parts"), gpu.join("parts"))?;
    fs::copy(
        cargo::workspace_root().join("platform/cuda/run-on-device.sh"),
        gpu.join("run-on-device.sh"),
    )?;

    let carried = tree_bytes(&checkout)? + dir_bytes(&gpu)?;
    let mib = |bytes: u64| bytes as f64 / (1 << 20) as f64;
    if carried > CALL_LIMIT {
        bail!(
            "this call would carry {:.1} MiB (checkout + .gpu), over the 64 MiB limit: pack again with a smaller --part-mib",
            mib(carried)
        );
    }
    let verb = match part {
        0 => "run floors smollm2-135m (then: qwen2-1.5b kv-cache; tests-tf32)",
        last if last == parts => "run doctor tests-float32",
        _ => "stash",
    };
    println!(
        "staged part {part} of {parts} in {} ({:.1} MiB travel). Device call:\n  run(command: \"bash .gpu/run-on-device.sh {verb}\", carry: [\".gpu\"])",
        gpu.display(),
        mib(carried)
    );
    Ok(())
}

/// The repository's main worktree: the checkout a session starts in, which the device tool sends.
fn main_checkout() -> Result<PathBuf> {
    let output = Command::new("git")
        .arg("-C")
        .arg(cargo::workspace_root())
        .args(["rev-parse", "--path-format=absolute", "--git-common-dir"])
        .output()
        .context("could not run git")?;
    let common = PathBuf::from(String::from_utf8(output.stdout)?.trim());
    Ok(common
        .parent()
        .context("git's common dir has no parent")?
        .to_path_buf())
}

/// Makes git (and so the device tool) ignore `.gpu/` in `checkout`, which it then carries only
/// when a call names it.
fn exclude_gpu_folder(checkout: &Path) -> Result<()> {
    let exclude = checkout.join(".git/info/exclude");
    let text = fs::read_to_string(&exclude).unwrap_or_default();
    if !text.lines().any(|line| line.trim() == "/.gpu/") {
        fs::create_dir_all(exclude.parent().expect("exclude is in .git/info"))?;
        fs::write(&exclude, format!("{text}/.gpu/\n"))
            .with_context(|| format!("cannot write {}", exclude.display()))?;
    }
    Ok(())
}

/// The bytes of what the device tool sends of `checkout`: tracked and untracked-but-not-ignored
/// files, and a `shared/` folder.
fn tree_bytes(checkout: &Path) -> Result<u64> {
    let mut files = 0;
    for relative in checkout_files(checkout)? {
        files += fs::metadata(checkout.join(relative))?.len();
    }
    Ok(files + dir_bytes(&checkout.join("shared")).unwrap_or(0))
}

fn dir_bytes(dir: &Path) -> Result<u64> {
    let mut total = 0;
    for entry in fs::read_dir(dir)?.flatten() {
        let metadata = entry.metadata()?;
        total += if metadata.is_dir() {
            dir_bytes(&entry.path())?
        } else {
            metadata.len()
        };
    }
    Ok(total)
}
