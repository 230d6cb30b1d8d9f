//! The peers of `cargo xtask bench --compare`: mlx-lm and llama.cpp (through llama-cpp-python),
//! installed on first use into a private virtualenv, each run through its script in
//! tools/course-tools/peers/ on a job file, printing one JSON object per measured run.

use crate::cargo::workspace_root;
use anyhow::{bail, Context, Result};
use indicatif::ProgressBar;
use serde::{Deserialize, Serialize};
use std::{
    io::{BufRead, BufReader},
    path::{Path, PathBuf},
    process::{Command, Stdio},
};

/// What a peer script is asked to run.
#[derive(Serialize)]
pub struct Job<'a> {
    pub model: &'a Path,
    pub weights: &'a str,
    pub threads: usize,
    pub prompts: Vec<JobPrompt<'a>>,
    pub max_new_tokens: usize,
    pub runs: usize,
    pub warmup_runs: usize,
}

#[derive(Serialize)]
pub struct JobPrompt<'a> {
    pub name: &'a str,
    pub ids: &'a [u32],
}

/// One measured run of a peer, as its script prints it.
#[derive(Clone, Debug, Deserialize, Serialize)]
pub struct PeerRun {
    pub system: String,
    pub weights: String,
    pub prompt: String,
    pub prompt_tokens: usize,
    pub generated_tokens: usize,
    pub ttft_s: f64,
    pub prefill_tok_s: f64,
    pub decode_tok_s: Option<f64>,
}

fn peers_dir() -> PathBuf {
    workspace_root().join("tools/course-tools/peers")
}

/// The virtualenv's Python, with the pinned peers installed: at once when a previous run
/// completed the install for these requirements, else after installing them (minutes: pip
/// compiles llama.cpp from its source).
pub fn ready_python(bench_dir: &Path) -> Result<PathBuf> {
    let requirements = peers_dir().join("requirements.txt");
    let pinned = std::fs::read_to_string(&requirements)
        .with_context(|| format!("cannot read {}", requirements.display()))?;
    let venv = bench_dir.join("peers-venv");
    let marker = venv.join("installed-requirements.txt");
    if std::fs::read_to_string(&marker).is_ok_and(|installed| installed == pinned) {
        return Ok(venv.join("bin").join("python"));
    }
    // Built beside its final place and renamed once complete: an interrupted install is never
    // mistaken for a finished one.
    let partial = bench_dir.join("peers-venv.partial");
    if partial.exists() {
        std::fs::remove_dir_all(&partial)
            .with_context(|| format!("cannot remove {}", partial.display()))?;
    }
    eprintln!(
        "installing the peers (mlx-lm, llama-cpp-python; pinned in {}) into {}.\n\
         pip compiles llama.cpp from its source: this takes several minutes, once.",
        requirements.display(),
        venv.display()
    );
    let python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".to_string());
    run_step(
        Command::new(&python).args(["-m", "venv"]).arg(&partial),
        &format!("`{python} -m venv` (on Debian: apt-get install python3-venv)"),
    )?;
    let venv_python = partial.join("bin").join("python");
    run_step(
        Command::new(&venv_python)
            .args(["-m", "pip", "install", "--disable-pip-version-check", "--require-hashes", "-r"])
            .arg(&requirements)
            // llama.cpp's CMake build: one job per core.
            .env("CMAKE_BUILD_PARALLEL_LEVEL", num_cpus().to_string()),
        "pip install of the peers (check that PyPI is reachable, and cmake's prerequisites: a C++ compiler)",
    )?;
    use_bridge_openblas(&partial)?;
    std::fs::write(partial.join("installed-requirements.txt"), &pinned)
        .context("cannot write the virtualenv's marker")?;
    if venv.exists() {
        std::fs::remove_dir_all(&venv)
            .with_context(|| format!("cannot remove the outdated {}", venv.display()))?;
    }
    std::fs::rename(&partial, &venv)
        .with_context(|| format!("cannot move the virtualenv to {}", venv.display()))?;
    Ok(venv.join("bin").join("python"))
}

fn num_cpus() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Runs `command` with its output on stderr: stdout carries the benchmark's table only.
fn run_step(command: &mut Command, what: &str) -> Result<()> {
    let status = command
        .stdout(Stdio::from(std::io::stderr()))
        .status()
        .with_context(|| format!("cannot start {what}"))?;
    if !status.success() {
        bail!("{what} failed ({status})");
    }
    Ok(())
}

/// The Linux `mlx-cpu` wheel loads its bundled reference BLAS by file name. The bridge
/// (platform/mlx-sys/build/blas.rs) puts a stand-in under that name that forwards to OpenBLAS from
/// PyPI; copying the stand-in and that OpenBLAS from the bridge's cache into the virtualenv gives
/// mlx-lm the same f32 GEMMs as our engine. Without it the comparison would measure BLAS, not engines.
fn use_bridge_openblas(venv: &Path) -> Result<()> {
    if !cfg!(target_os = "linux") {
        return Ok(());
    }
    let cache = std::env::var_os("MLX_CACHE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target/mlx"));
    let bridge = std::fs::read_dir(&cache)
        .with_context(|| format!("cannot list the bridge's MLX cache {}", cache.display()))?
        .flatten()
        .map(|entry| entry.path())
        .find(|path| {
            let name = path.file_name().unwrap_or_default().to_string_lossy();
            name.starts_with("mlx-cpu-") && name.contains("-with-scipy-openblas32-")
        })
        .with_context(|| {
            format!(
                "no MLX with OpenBLAS in {}: build the engine first (cargo xtask run)",
                cache.display()
            )
        })?;
    let site_packages: Vec<PathBuf> = std::fs::read_dir(venv.join("lib"))
        .with_context(|| format!("cannot list {}", venv.join("lib").display()))?
        .flatten()
        .map(|python| python.path().join("site-packages"))
        .filter(|dir| dir.join("mlx_cpu.libs").is_dir())
        .collect();
    if site_packages.is_empty() {
        bail!("no mlx_cpu.libs in the virtualenv: has the mlx-cpu wheel changed?");
    }
    for site in site_packages {
        // The stand-in finds OpenBLAS through its runpath, $ORIGIN/../scipy_openblas32/lib.
        copy_files(
            &bridge.join("scipy_openblas32/lib"),
            &site.join("scipy_openblas32/lib"),
        )?;
        for entry in std::fs::read_dir(bridge.join("mlx_cpu.libs"))?.flatten() {
            if entry.file_name().to_string_lossy().starts_with("libblas-") {
                let to = site.join("mlx_cpu.libs").join(entry.file_name());
                std::fs::copy(entry.path(), &to).with_context(|| {
                    format!("cannot copy the BLAS stand-in to {}", to.display())
                })?;
            }
        }
    }
    Ok(())
}

fn copy_files(from: &Path, to: &Path) -> Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)
        .with_context(|| format!("cannot list {}", from.display()))?
        .flatten()
    {
        if entry.file_type()?.is_file() {
            std::fs::copy(entry.path(), to.join(entry.file_name()))?;
        }
    }
    Ok(())
}

/// Runs `script` (in tools/course-tools/peers/) on `job` with `python`, ticking `bar` at each
/// measured run, and returns the runs. Its stderr goes to `log`, shown when it fails.
pub fn run_script(
    python: &Path,
    script: &str,
    job: &Job<'_>,
    job_file: &Path,
    log: &Path,
    bar: &ProgressBar,
) -> Result<Vec<PeerRun>> {
    std::fs::write(job_file, serde_json::to_string_pretty(job)?)
        .with_context(|| format!("cannot write {}", job_file.display()))?;
    let log_file =
        std::fs::File::create(log).with_context(|| format!("cannot create {}", log.display()))?;
    let threads = job.threads.to_string();
    let mut child = Command::new(python)
        .arg(peers_dir().join(script))
        .arg(job_file)
        .env("OPENBLAS_NUM_THREADS", &threads)
        .env("OMP_NUM_THREADS", &threads)
        .stdout(Stdio::piped())
        .stderr(log_file)
        .spawn()
        .with_context(|| format!("cannot start {}", python.display()))?;
    let stdout = child.stdout.take().context("the peer's stdout")?;
    let mut runs = Vec::new();
    for line in BufReader::new(stdout).lines() {
        let line = line.context("cannot read the peer's output")?;
        let run: PeerRun = serde_json::from_str(&line)
            .with_context(|| format!("{script} printed something else than a run: {line}"))?;
        runs.push(run);
        bar.inc(1);
    }
    let status = child.wait()?;
    if !status.success() {
        let said = std::fs::read_to_string(log).unwrap_or_default();
        let tail: Vec<&str> = said.lines().rev().take(15).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        bail!(
            "{script} failed ({status}); the end of {}:\n{}",
            log.display(),
            tail.join("\n")
        );
    }
    Ok(runs)
}
