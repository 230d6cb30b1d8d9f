//! The commands of `cargo xtask` with heavy dependencies (mdBook, an HTTP stack, plotting, the
//! model converter, a Rust parser), in their own crate so that xtask itself compiles in seconds.
//! xtask runs this binary as `cargo run --quiet --package course-tools -- COMMAND ARGS`.

mod api_check;
mod bench;
mod book;
mod fuzz;
mod gpu;
mod load_test;

use clap::{Parser, Subcommand};
use model_convert as models;
use std::{path::PathBuf, process::ExitCode};
use xtask::{cargo, chapters, run};

#[derive(Parser)]
#[command(
    name = "cargo xtask",
    bin_name = "cargo xtask",
    about = "The heavy commands of cargo xtask"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
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
    /// For check-solutions: where a chapter's stubs and solution differ in public API, one line each.
    #[command(hide = true)]
    ApiCheck {
        stub_src: PathBuf,
        solution_src: PathBuf,
    },
}

fn main() -> ExitCode {
    let result = match Cli::parse().command {
        Command::Book { serve, port } => book::run(serve, port),
        Command::Bench(args) => bench::run(args),
        Command::Fuzz(args) => fuzz::run(args),
        Command::LoadTest(args) => load_test::run(args),
        Command::Gpu(args) => gpu::run(args),
        Command::ApiCheck {
            stub_src,
            solution_src,
        } => api_check::compare(&stub_src, &solution_src).map(|problems| {
            for problem in problems {
                println!("{problem}");
            }
        }),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            // The chain of contexts reads as one sentence; a backtrace would only bury it.
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}
