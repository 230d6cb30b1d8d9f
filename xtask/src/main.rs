//! `cargo xtask`: the one entry point for learners, instructors and CI.
//! It never links MLX itself, so it builds in seconds and can explain a broken setup.

mod cargo;
mod doctor;
mod models;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "cargo xtask", about = "Build an LLM inference engine on MLX, chapter by chapter")]
struct Cli {
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
    /// Fetch and convert models (the built-in SmolLM2, or one from models/models.toml).
    Models(models::ModelsArgs),
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Doctor { bench } => doctor::run(bench),
        Command::Models(args) => models::run(args),
    }
}
