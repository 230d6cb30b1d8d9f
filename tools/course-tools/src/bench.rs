//! `cargo xtask bench [NAME]`: builds the engine's `bench` binary (release) and runs one benchmark
//! on the built-in model. Without a name it runs prompt sets through the engine (`generate`);
//! `--compare` runs them beside mlx-lm and llama.cpp; `batching` also draws its table as an SVG.

mod compare;
mod peers;
mod plots;

use crate::{cargo::workspace_root, models, run::run_engine_binary};
use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use std::path::PathBuf;

/// The MLX-quantized conversion of the built-in model (see models/models.toml).
const BUILTIN_4BIT: &str = "smollm2-135m-instruct-4bit";

#[derive(Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct BenchArgs {
    #[command(subcommand)]
    benchmark: Option<Benchmark>,
    #[command(flatten)]
    generate: GenerateOptions,
}

#[derive(Subcommand)]
enum Benchmark {
    /// Decode tokens/s with and without the KV cache at prompt lengths 32, 256 and 1024.
    KvCache(PassThrough),
    /// Continuous batching: aggregate tokens/s and latency at 1 to 32 concurrent requests.
    Batching(PassThrough),
    /// Paged KV and the prefix cache: a multi-turn chat's time to first token with and without
    /// the prefix cache, and the requests that fit the same KV memory dense and paged.
    Paged(PassThrough),
    /// Speculative decoding: greedy decode tokens/s plain and with each drafter (prompt lookup,
    /// the 4-bit model drafting for the float one), acceptance rates, on the built-in prompts.
    Speculative(PassThrough),
    /// One stream's prefill and decode tokens/s and a decode step's build and eval times, the
    /// engine beside its fused path before fusing operations (book: "Making it fast").
    SingleStream(PassThrough),
    /// Chapter 12's decode attention over pages: gather + MLX's attention beside the fused CUDA
    /// kernel, at several contexts and batches (the kernel needs a CUDA GPU).
    PagedAttention(PassThrough),
}

#[derive(Args)]
struct PassThrough {
    /// Measure your chapters instead of the solutions.
    #[arg(long)]
    mine: bool,
    /// Options of the benchmark, like --prompt-lengths 32,256 or --concurrency 1,2,4
    /// (`-- --help` lists them).
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    args: Vec<String>,
}

/// The generation benchmark's options (`cargo xtask bench`, `cargo xtask bench --compare`).
#[derive(Args, Clone)]
pub struct GenerateOptions {
    /// Run our engine beside mlx-lm and llama.cpp (installed on first use into
    /// target/bench/peers-venv) on the same prompts and token counts, and print ratios.
    #[arg(long)]
    compare: bool,
    /// A prompt, sent as is (repeatable). Without prompts the built-in set runs (with --compare,
    /// its `medium` prompt).
    #[arg(long = "prompt", value_name = "TEXT")]
    prompts: Vec<String>,
    /// Prompts in JSON Lines: a JSON string, or {"text": ..., "name": ..., "chat": bool}, a line.
    #[arg(long, value_name = "FILE")]
    prompt_file: Option<PathBuf>,
    /// Built-in prompts to run: short-chat, medium, long.
    #[arg(long, value_delimiter = ',', value_name = "NAMES")]
    builtin: Vec<String>,
    /// Wrap every --prompt in the model's chat template.
    #[arg(long)]
    chat: bool,
    /// Measured runs per prompt and mode [default: 5; 3 with --compare].
    #[arg(long)]
    runs: Option<usize>,
    /// Unmeasured runs before them [default: 1].
    #[arg(long)]
    warmup_runs: Option<usize>,
    /// Tokens every run generates, EOS ignored [default: 64].
    #[arg(long)]
    max_new_tokens: Option<usize>,
    /// Modes: none (float32), int4, int8 (quantized as the model loads), mlx-4bit (the 4-bit MLX
    /// conversion of the built-in model) [default: none; --compare runs none,mlx-4bit].
    #[arg(long, value_delimiter = ',', value_name = "MODES")]
    quantization: Vec<String>,
    /// Write the JSON report here [default with --compare: target/bench/compare.json].
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
    /// With --compare: concurrent streams of the batching measurement.
    #[arg(long, default_value_t = 16)]
    concurrency: usize,
    /// With --compare: threads of every system (OpenBLAS under MLX, llama.cpp's).
    #[arg(long, default_value_t = 2)]
    threads: usize,
    /// Measure your chapters instead of the solutions.
    #[arg(long)]
    mine: bool,
}

pub fn run(args: BenchArgs) -> Result<()> {
    match args.benchmark {
        Some(Benchmark::KvCache(pass)) => pass_through("kv-cache", pass),
        Some(Benchmark::Batching(pass)) => batching(pass),
        Some(Benchmark::Paged(pass)) => paged(pass),
        Some(Benchmark::Speculative(pass)) => speculative(pass),
        Some(Benchmark::SingleStream(pass)) => pass_through("single-stream", pass),
        Some(Benchmark::PagedAttention(pass)) => {
            let args: Vec<String> = std::iter::once("paged-attention".to_string())
                .chain(pass.args)
                .collect();
            run_engine_binary("bench", pass.mine, &args)
        }
        None if args.generate.compare => compare::run(&args.generate),
        None => {
            let options = &args.generate;
            let modes = if options.quantization.is_empty() {
                vec!["none".to_string()]
            } else {
                options.quantization.clone()
            };
            let json = options.json.clone();
            run_generate(options, &modes, options.runs, json.as_deref(), None)
        }
    }
}

/// Runs the engine's `bench generate` with `options`, on the built-in model (and its 4-bit
/// conversion when `modes` has mlx-4bit).
fn run_generate(
    options: &GenerateOptions,
    modes: &[String],
    runs: Option<usize>,
    json: Option<&std::path::Path>,
    built: Option<&std::path::Path>,
) -> Result<()> {
    let model = models::ready_model_dir(None)?;
    let mut bench_args = vec![
        "generate".to_string(),
        "--model-path".to_string(),
        model.display().to_string(),
        "--quantization".to_string(),
        modes.join(","),
    ];
    if modes.iter().any(|mode| mode == "mlx-4bit") {
        let quantized = models::ready_model_dir(Some(BUILTIN_4BIT))?;
        bench_args.extend([
            "--quantized-model-path".to_string(),
            quantized.display().to_string(),
        ]);
    }
    for prompt in &options.prompts {
        bench_args.extend(["--prompt".to_string(), prompt.clone()]);
    }
    if let Some(file) = &options.prompt_file {
        bench_args.extend([
            "--prompt-file".to_string(),
            absolute(file)?.display().to_string(),
        ]);
    }
    if !options.builtin.is_empty() {
        bench_args.extend(["--builtin".to_string(), options.builtin.join(",")]);
    }
    if options.chat {
        bench_args.push("--chat".to_string());
    }
    let numbers = [
        ("--runs", runs),
        ("--warmup-runs", options.warmup_runs),
        ("--max-new-tokens", options.max_new_tokens),
    ];
    for (flag, value) in numbers {
        if let Some(value) = value {
            bench_args.extend([flag.to_string(), value.to_string()]);
        }
    }
    if let Some(json) = json {
        bench_args.extend(["--json".to_string(), absolute(json)?.display().to_string()]);
    }
    match built {
        Some(binary) => run_built(binary, &bench_args),
        None => run_engine_binary("bench", options.mine, &bench_args),
    }
}

/// Builds (release) the engine's `bench` binary, on the solutions or, with `mine`, on your
/// chapters, and returns its path: `--compare` runs it several times without asking cargo again
/// (cargo waits for any other build sharing the target folder).
fn build_bench_binary(mine: bool) -> Result<PathBuf> {
    let mut command = crate::cargo::command();
    command.args([
        "build",
        "--release",
        "--package",
        "engine",
        "--bin",
        "bench",
        "--message-format=json-render-diagnostics",
    ]);
    if !mine {
        command.args(["--features", "solutions"]);
    }
    let output = command
        .stderr(std::process::Stdio::inherit())
        .output()
        .context("could not start cargo to build the engine")?;
    if !output.status.success() {
        anyhow::bail!(
            "building the engine's bench binary failed ({})",
            output.status
        );
    }
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|message| message["target"]["name"] == "bench")
        .find_map(|message| message["executable"].as_str().map(PathBuf::from))
        .context("cargo built the engine but named no bench executable")
}

/// Runs the built `binary` with `args`, failing with its exit status.
fn run_built(binary: &std::path::Path, args: &[String]) -> Result<()> {
    let status = std::process::Command::new(binary)
        .args(args)
        .status()
        .with_context(|| format!("cannot start {}", binary.display()))?;
    if !status.success() {
        anyhow::bail!("{} {} failed ({status})", binary.display(), args.join(" "));
    }
    Ok(())
}

/// Cargo runs the engine from the workspace root: a relative path given here must not move.
fn absolute(path: &std::path::Path) -> Result<PathBuf> {
    std::path::absolute(path).with_context(|| format!("cannot resolve {}", path.display()))
}

fn bench_dir() -> Result<PathBuf> {
    let out = workspace_root().join("target").join("bench");
    std::fs::create_dir_all(&out).with_context(|| format!("cannot create {}", out.display()))?;
    Ok(out)
}

fn with_model_path(name: &str, args: Vec<String>) -> Result<Vec<String>> {
    let mut bench_args = vec![name.to_string()];
    if !args.iter().any(|arg| arg.starts_with("--model-path")) {
        let model = models::ready_model_dir(None)?;
        bench_args.extend(["--model-path".to_string(), model.display().to_string()]);
    }
    bench_args.extend(args);
    Ok(bench_args)
}

fn pass_through(name: &str, pass: PassThrough) -> Result<()> {
    run_engine_binary("bench", pass.mine, &with_model_path(name, pass.args)?)
}

fn batching(pass: PassThrough) -> Result<()> {
    let out = bench_dir()?;
    let json = out.join("batching.json");
    let mut args = with_model_path("batching", pass.args)?;
    args.extend(["--json".to_string(), json.display().to_string()]);
    run_engine_binary("bench", pass.mine, &args)?;
    let svg = out.join("batching.svg");
    plots::plot_batching(&json, &svg)?;
    eprintln!("plot: {}", svg.display());
    Ok(())
}

fn paged(pass: PassThrough) -> Result<()> {
    let out = bench_dir()?;
    let json = out.join("paged.json");
    let mut args = with_model_path("paged", pass.args)?;
    args.extend(["--json".to_string(), json.display().to_string()]);
    run_engine_binary("bench", pass.mine, &args)?;
    let svg = out.join("paged.svg");
    plots::plot_prefix_cache(&json, &svg)?;
    eprintln!("plot: {}", svg.display());
    Ok(())
}

fn speculative(pass: PassThrough) -> Result<()> {
    let mut args = with_model_path("speculative", pass.args)?;
    if !args.iter().any(|arg| arg.starts_with("--draft-model-path")) {
        let draft = models::ready_model_dir(Some(BUILTIN_4BIT))?;
        args.extend([
            "--draft-model-path".to_string(),
            draft.display().to_string(),
        ]);
    }
    run_engine_binary("bench", pass.mine, &args)
}
