//! `cargo xtask bench NAME`: builds the engine's `bench` binary (release) and runs one benchmark
//! on the built-in model.

use crate::{models, run::run_engine_binary};
use anyhow::Result;
use clap::{Args, ValueEnum};

#[derive(Args)]
pub struct BenchArgs {
    benchmark: Benchmark,
    /// Measure your chapters instead of the solutions.
    #[arg(long)]
    mine: bool,
    /// Options of the benchmark, like --prompt-lengths 32,256.
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    args: Vec<String>,
}

#[derive(Clone, Copy, ValueEnum)]
enum Benchmark {
    /// Decode tokens/s with and without the KV cache at prompt lengths 32, 256 and 1024.
    KvCache,
}

pub fn run(args: BenchArgs) -> Result<()> {
    let name = match args.benchmark {
        Benchmark::KvCache => "kv-cache",
    };
    let model = models::ready_model_dir(None)?;
    let mut bench_args = vec![name.to_string()];
    if !args.args.iter().any(|arg| arg.starts_with("--model-path")) {
        bench_args.extend(["--model-path".to_string(), model.display().to_string()]);
    }
    bench_args.extend(args.args);
    run_engine_binary("bench", args.mine, &bench_args)
}
