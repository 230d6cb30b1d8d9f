//! `cargo xtask`: the one entry point for learners, instructors and CI. A thin dispatcher: it
//! never links MLX, and the commands with heavy dependencies live in tools/ and run as processes
//! (xtask/src/tools.rs), so it builds in seconds and can explain a broken setup.

mod book;
mod check_solutions;
mod doctor;
mod manifest_check;
mod test;
mod test_runner;

use clap::{Args, Parser, Subcommand};
use std::{ffi::OsString, process::ExitCode};
use xtask::{cargo, chapters, models, run, system, tools};

#[derive(Parser)]
#[command(
    name = "cargo xtask",
    bin_name = "cargo xtask",
    about = "Build an LLM inference engine on MLX, chapter by chapter"
)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Show which MLX is used (version, backend, device, BLAS, library path) and check it runs.
    Doctor {
        /// Also measure f32 GEMM throughput and memory bandwidth.
        #[arg(long)]
        bench: bool,
    },
    /// Run chapter tests against your code, ending with a table of tasks: what passes, where to start.
    Test(test::TestArgs),
    /// For instructors and CI: solutions pass, stubs fail, APIs match, lints are clean, the book builds.
    CheckSolutions,
    /// Build the course book (book/) and optionally serve it on localhost.
    ///
    /// `--serve` serves it at http://127.0.0.1:PORT/ (`--port`, default 3000).
    #[command(disable_help_flag = true)]
    Book(Tool),
    /// Measure the engine: prompt sets (default), `--compare` with mlx-lm and llama.cpp,
    /// `kv-cache`, `batching`, `paged`.
    ///
    /// Options after `kv-cache`, `batching` or `paged` go to that benchmark: `cargo xtask bench kv-cache
    /// -- --help` lists them.
    #[command(disable_help_flag = true)]
    Bench(Tool),
    /// Fuzz the parsers of untrusted files (GGUF, safetensors headers, config.json) for a bounded time.
    #[command(disable_help_flag = true)]
    Fuzz(Tool),
    /// Drive the release server with concurrent clients on loopback: throughput, latency, errors, memory.
    #[command(disable_help_flag = true)]
    LoadTest(Tool),
    /// Run the engine on a lent NVIDIA machine: `pack` builds for CUDA, `stage N` readies one call.
    #[command(disable_help_flag = true)]
    Gpu(Tool),
    /// Fetch and convert models (the built-in SmolLM2, or one from models/models.toml).
    #[command(disable_help_flag = true)]
    Models(Tool),
    /// Generate text with the engine (built from the solutions, or from your chapters with --mine).
    ///
    /// Everything after the options goes to the engine: `cargo xtask run -- --help` lists it.
    Run {
        /// Build the engine from your chapters instead of the solutions.
        #[arg(long)]
        mine: bool,
        /// Engine arguments, like --prompt TEXT --max-new-tokens 32 --show-stats.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
}

/// A command that lives in a tools/ crate: clap here only lists it; its arguments go there as
/// given (`--help` and `--` included), and its own `--help` shows its options.
#[derive(Args)]
struct Tool {
    #[arg(
        trailing_var_arg = true,
        allow_hyphen_values = true,
        value_name = "ARGS"
    )]
    _args: Vec<OsString>,
}

/// The arguments after the subcommand's name, exactly as given: clap would drop a `--`.
fn tool_args() -> impl Iterator<Item = OsString> {
    std::env::args_os().skip(2)
}

fn main() -> ExitCode {
    match run(Cli::parse().command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            // The chain of contexts reads as one sentence; a backtrace would only bury it.
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(command: Command) -> anyhow::Result<()> {
    if matches!(
        command,
        Command::Doctor { .. }
            | Command::Test(_)
            | Command::CheckSolutions
            | Command::Run { .. }
            | Command::Bench(_)
            | Command::LoadTest(_)
    ) {
        // These build crates that link MLX.
        system::ensure_build_prerequisites()?;
    }
    match command {
        Command::Doctor { bench } => doctor::run(bench),
        Command::Models(_) => tools::forward(tools::model_convert().args(tool_args())),
        Command::Gpu(_) => course_tools("gpu"),
        Command::Bench(_) => course_tools("bench"),
        Command::Fuzz(_) => course_tools("fuzz"),
        Command::LoadTest(_) => course_tools("load-test"),
        Command::Test(args) => test::run(args),
        Command::CheckSolutions => check_solutions::run(),
        Command::Book(_) => course_tools("book"),
        Command::Run { mine, args } => run::run(mine, args),
    }
}

fn course_tools(command: &str) -> anyhow::Result<()> {
    tools::forward(tools::course_tools().arg(command).args(tool_args()))
}
