//! `cargo xtask fuzz [TARGET] [--seconds N]`: runs the cargo-fuzz targets of `fuzz/` (the GGUF
//! reader, the safetensors header check, `config.json` parsing), each for a bounded time, and
//! reports runs, speed, corpus size and crashes. Not part of CI's tests: a benchmark-style
//! command whose last figures the book quotes.

use crate::cargo::workspace_root;
use anyhow::{bail, Context, Result};
use clap::{Args, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};
use std::{
    fs,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::Duration,
};

#[derive(Args)]
pub struct FuzzArgs {
    /// One target; without it, every target in turn.
    target: Option<Target>,
    /// How long each target runs.
    #[arg(long, default_value_t = 60)]
    seconds: u64,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Target {
    /// The GGUF reader of tools/model-convert (`models fetch`), on arbitrary bytes.
    Gguf,
    /// The loader's safetensors header check, on arbitrary bytes.
    Safetensors,
    /// The loader's `config.json` parsing, on arbitrary text.
    Config,
}

impl Target {
    const ALL: [Target; 3] = [Target::Gguf, Target::Safetensors, Target::Config];

    fn name(self) -> &'static str {
        match self {
            Target::Gguf => "gguf",
            Target::Safetensors => "safetensors",
            Target::Config => "config",
        }
    }
}

/// What one target's run reported.
struct Report {
    target: &'static str,
    runs: u64,
    seconds: u64,
    corpus: usize,
    crashes: Vec<PathBuf>,
}

pub fn run(args: FuzzArgs) -> Result<()> {
    let fuzz_dir = workspace_root().join("fuzz");
    check_cargo_fuzz()?;
    let targets = match args.target {
        Some(target) => vec![target],
        None => Target::ALL.to_vec(),
    };
    eprintln!("building the fuzz targets (sanitizers on, first build takes minutes)");
    let mut build = fuzz_command(&fuzz_dir);
    build.args(["build", "-O"]);
    let status = build.status().context("cannot start cargo fuzz build")?;
    if !status.success() {
        bail!("`cargo fuzz build` failed ({status})");
    }
    let mut reports = Vec::new();
    for target in targets {
        reports.push(run_target(&fuzz_dir, target, args.seconds)?);
    }
    println!(
        "\n| target | runs | runs/s | corpus | crashes |\n| --- | ---: | ---: | ---: | ---: |"
    );
    for report in &reports {
        println!(
            "| {} | {} | {} | {} | {} |",
            report.target,
            report.runs,
            report.runs / report.seconds.max(1),
            report.corpus,
            report.crashes.len()
        );
    }
    let crashes: Vec<&PathBuf> = reports.iter().flat_map(|report| &report.crashes).collect();
    if crashes.is_empty() {
        return Ok(());
    }
    for crash in &crashes {
        println!("crash input: {}", crash.display());
    }
    bail!(
        "{} crash inputs: commit them under fuzz/artifacts/ (the replay tests run them) and fix the parser; `cargo fuzz run TARGET FILE` in fuzz/ reproduces one",
        crashes.len()
    )
}

fn check_cargo_fuzz() -> Result<()> {
    let found = Command::new("cargo")
        .args(["fuzz", "--version"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success());
    if !found {
        bail!("cargo-fuzz is not installed: run `cargo install cargo-fuzz`");
    }
    Ok(())
}

/// `cargo fuzz` in `fuzz/`. libFuzzer needs nightly-only compiler flags (sanitizer coverage);
/// RUSTC_BOOTSTRAP=1 lets the stable compiler accept them.
fn fuzz_command(fuzz_dir: &Path) -> Command {
    let mut command = Command::new("cargo");
    command
        .arg("fuzz")
        .current_dir(fuzz_dir)
        .env("RUSTC_BOOTSTRAP", "1");
    command
}

fn run_target(fuzz_dir: &Path, target: Target, seconds: u64) -> Result<Report> {
    let name = target.name();
    // The working corpus grows between runs (ignored by git); the committed seeds start it.
    let corpus = fuzz_dir.join("corpus").join(name);
    fs::create_dir_all(&corpus).with_context(|| format!("cannot create {}", corpus.display()))?;
    let artifacts = fuzz_dir.join("artifacts").join(name);
    let before = list(&artifacts);
    let log_dir = workspace_root().join("target").join("fuzz");
    fs::create_dir_all(&log_dir).with_context(|| format!("cannot create {}", log_dir.display()))?;
    let log_path = log_dir.join(format!("{name}.log"));
    let log = fs::File::create(&log_path)
        .with_context(|| format!("cannot create {}", log_path.display()))?;

    let progress = ProgressBar::new(seconds).with_style(
        ProgressStyle::with_template("{msg:12} [{bar:40}] {pos}/{len} s")
            .expect("a valid template")
            .progress_chars("=> "),
    );
    progress.set_message(name);
    let mut command = fuzz_command(fuzz_dir);
    command
        .args(["run", "-O", name])
        .arg(&corpus)
        .arg(fuzz_dir.join("seeds").join(name))
        .arg("--")
        .arg(format!("-max_total_time={seconds}"))
        // A parser that allocates what a hostile header claims dies here, as a crash input.
        .arg("-rss_limit_mb=2048")
        .arg("-malloc_limit_mb=512")
        .arg("-max_len=65536")
        .arg("-print_final_stats=1")
        .stdout(log.try_clone().context("cannot share the log file")?)
        .stderr(log);
    let mut child = command
        .spawn()
        .with_context(|| format!("cannot start cargo fuzz run {name}"))?;
    let status = loop {
        if let Some(status) = child.try_wait().context("cannot wait for cargo fuzz")? {
            break status;
        }
        std::thread::sleep(Duration::from_millis(250));
        progress.set_position(progress.elapsed().as_secs().min(seconds));
    };
    progress.finish_and_clear();

    let text = fs::read_to_string(&log_path).unwrap_or_default();
    let runs = final_stat(&text, "stat::number_of_executed_units").unwrap_or(0);
    let crashes: Vec<PathBuf> = list(&artifacts)
        .into_iter()
        .filter(|path| !before.contains(path))
        .collect();
    if !status.success() && crashes.is_empty() {
        bail!(
            "cargo fuzz run {name} failed ({status}) without a crash input: see {}",
            log_path.display()
        );
    }
    eprintln!(
        "{name}: {runs} runs in {seconds} s, log in {}",
        log_path.display()
    );
    Ok(Report {
        target: name,
        runs,
        seconds,
        corpus: list(&corpus).len(),
        crashes,
    })
}

fn list(dir: &Path) -> Vec<PathBuf> {
    fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(|entry| entry.ok().map(|entry| entry.path()))
                .collect()
        })
        .unwrap_or_default()
}

/// A number from libFuzzer's `-print_final_stats` lines (`stat::name: value`).
fn final_stat(log: &str, name: &str) -> Option<u64> {
    log.lines()
        .filter_map(|line| line.strip_prefix(name))
        .filter_map(|rest| rest.trim_start_matches(':').trim().parse().ok())
        .next_back()
}

#[cfg(test)]
mod tests {
    use super::final_stat;

    #[test]
    fn final_stats_are_read_from_libfuzzer_output() {
        let log = "#2 INITED cov: 10\nDone 12345 runs in 5 second(s)\nstat::number_of_executed_units: 12345\nstat::average_exec_per_sec:     2469\n";
        assert_eq!(
            final_stat(log, "stat::number_of_executed_units"),
            Some(12345)
        );
        assert_eq!(final_stat(log, "stat::average_exec_per_sec"), Some(2469));
        assert_eq!(final_stat(log, "stat::peak_rss_mb"), None);
    }
}
