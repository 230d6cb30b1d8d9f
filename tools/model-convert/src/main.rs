//! `cargo xtask models ...` runs this binary: `cargo run -p model-convert -- fetch` works too.

use clap::Parser;
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "cargo xtask models",
    bin_name = "cargo xtask models",
    about = "Fetch and convert models (the built-in SmolLM2, or one from models/models.toml)"
)]
struct Cli {
    #[command(flatten)]
    models: model_convert::ModelsArgs,
}

fn main() -> ExitCode {
    match model_convert::run(Cli::parse().models) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            // The chain of contexts reads as one sentence; a backtrace would only bury it.
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}
