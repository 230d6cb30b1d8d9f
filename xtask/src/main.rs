//! `cargo xtask`: the one entry point for learners, instructors and CI.
//! It never links MLX itself, so it builds in seconds and can explain a broken setup.

mod api_check;
mod bench;
mod book;
mod cargo;
mod chapters;
mod check_solutions;
mod doctor;
mod fuzz;
mod gpu;
mod load_test;
mod manifest_check;
mod models;
mod run;
mod test;
mod test_runner;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "cargo xtask",
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
    Book {
        /// Serve the built book at http://127.0.0.1:PORT/.
        #[arg(long)]
        serve: bool,
        #[arg(long, default_value_t = 3000)]
        port: u16,
    },
    /// Measure the engine: prompt sets (default), `--compare` with mlx-lm and llama.cpp,
    /// `kv-cache`, `batching`.
    ///
    /// Options after `kv-cache` or `batching` go to that benchmark: `cargo xtask bench kv-cache
    /// -- --help` lists them.
    Bench(bench::BenchArgs),
    /// Fuzz the parsers of untrusted files (GGUF, safetensors headers, config.json) for a bounded time.
    Fuzz(fuzz::FuzzArgs),
    /// Drive the release server with concurrent clients on loopback: throughput, latency, errors, memory.
    LoadTest(load_test::LoadTestArgs),
    /// Run the engine on a lent NVIDIA machine: `pack` builds for CUDA, `stage N` readies one call.
    Gpu(gpu::GpuArgs),
    /// Fetch and convert models (the built-in SmolLM2, or one from models/models.toml).
    Models(models::ModelsArgs),
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
    match command {
        Command::Doctor { bench } => doctor::run(bench),
        Command::Models(args) => models::run(args),
        Command::Gpu(args) => gpu::run(args),
        Command::Bench(args) => bench::run(args),
        Command::Fuzz(args) => fuzz::run(args),
        Command::LoadTest(args) => load_test::run(args),
        Command::Test(args) => test::run(args),
        Command::CheckSolutions => check_solutions::run(),
        Command::Book { serve, port } => book::run(serve, port),
        Command::Run { mine, args } => run::run(mine, args),
    }
}
