//! `cargo xtask models ...`: the built-in model and the model registry (models/models.toml).

use anyhow::Result;
use clap::{Args, Subcommand};

#[derive(Args)]
pub struct ModelsArgs {
    #[command(subcommand)]
    command: ModelsCommand,
}

#[derive(Subcommand)]
enum ModelsCommand {
    /// Download and convert a model from the registry (default: the built-in SmolLM2).
    Fetch,
}

pub fn run(args: ModelsArgs) -> Result<()> {
    match args.command {
        ModelsCommand::Fetch => anyhow::bail!("not built yet"),
    }
}
