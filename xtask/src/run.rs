//! `cargo xtask run`: builds the engine (solutions/engine) and generates with it.

use crate::{cargo, models};
use anyhow::{Context, Result};

/// What `cargo xtask run` asks when given no prompt.
const EXAMPLE_PROMPT: &str = "What is the capital of France? Answer in one sentence.";

/// Runs the `tiny-llm` binary with `engine_args`, on the solutions or, with `mine`, on your
/// chapters. `--model NAME` (from models/models.toml, or OWNER/NAME on the Hugging Face Hub) and
/// `--model-path FILE.gguf` become `--model-path DIR` once that model is downloaded or converted;
/// without either, the built-in model is fetched first.
pub fn run(mine: bool, mut engine_args: Vec<String>) -> Result<()> {
    if let Some(position) = engine_args
        .iter()
        .position(|arg| arg == "--model" || arg.starts_with("--model="))
    {
        let flag = engine_args.remove(position);
        let name = match flag.strip_prefix("--model=") {
            Some(name) => name.to_string(),
            None if position < engine_args.len() => engine_args.remove(position),
            None => anyhow::bail!(
                "--model needs a name (`cargo xtask models list` shows them) or a Hugging Face repository OWNER/NAME"
            ),
        };
        let dir = models::ready_model_dir(Some(&name))?;
        engine_args.extend(["--model-path".to_string(), dir.display().to_string()]);
    }
    if let Some(position) = engine_args.iter().position(|arg| arg == "--model-path") {
        let gguf = engine_args
            .get(position + 1)
            .filter(|path| path.ends_with(".gguf"))
            .cloned();
        if let Some(gguf) = gguf {
            let dir = models::ready_model_dir(Some(&gguf))?;
            engine_args[position + 1] = dir.display().to_string();
        }
    }
    let has = |flag: &str| {
        engine_args
            .iter()
            .any(|arg| arg == flag || arg.starts_with(&format!("{flag}=")))
    };
    if !has("--model-path") {
        models::ready_model_dir(None)?;
    }
    let serving = engine_args.first().is_some_and(|arg| arg == "serve");
    if !serving && !has("--prompt") && !has("--message") && !has("--help") && !has("-h") {
        engine_args.extend(["--chat", "--prompt", EXAMPLE_PROMPT].map(String::from));
    }
    run_engine_binary("tiny-llm", mine, &engine_args)
}

/// Builds (release) and runs one of the engine's binaries, on the solutions or, with `mine`, on
/// your chapters.
pub fn run_engine_binary(binary: &str, mine: bool, args: &[String]) -> Result<()> {
    let mut command = cargo::command();
    command.args([
        "run",
        "--quiet",
        "--release",
        "--package",
        "engine",
        "--bin",
        binary,
    ]);
    if !mine {
        command.args(["--features", "solutions"]);
    }
    command.arg("--").args(args);
    let status = command
        .status()
        .context("could not start cargo to run the engine")?;
    // The engine (or cargo, when the build fails) has said what went wrong: only pass its code on.
    if !status.success() {
        std::process::exit(status.code().unwrap_or(1));
    }
    Ok(())
}
