//! `bench generate`: prompt sets across quantization modes, through the engine's real path,
//! with min/p50/p95/max of time to first token, prefill and decode speed and KV-cache memory,
//! the backend's floor and the engine's overhead per decode step; `--json` writes a versioned
//! report.

use super::{
    floor::{self, WeightFormat},
    machine::Machine,
    prompts::{self, Prompt},
    summary::Summary,
    timed_run::{timed_generation, RunTimes, StepTimes},
    write_atomically,
};
use anyhow::{bail, Context, Result};
use clap::ValueEnum;
use decode::Tokenizer;
use indicatif::{ProgressBar, ProgressStyle};
use quantized_matmul::{load_model, weight_bytes, Quantization, QuantizedLoader};
use serde::Serialize;
use std::path::{Path, PathBuf};

/// Bump when a field of the JSON report changes meaning or goes away.
const SCHEMA_VERSION: u32 = 1;

#[derive(clap::Args)]
pub struct GenerateArgs {
    /// A float model directory (HF layout).
    #[arg(long, value_name = "DIR")]
    model_path: PathBuf,
    /// An MLX-quantized model directory: what the `mlx-4bit` mode runs.
    #[arg(long, value_name = "DIR")]
    quantized_model_path: Option<PathBuf>,
    /// Modes to measure: the float model as is (none), quantized as it loads (int4, int8), or the
    /// MLX-quantized directory (mlx-4bit).
    #[arg(long, value_delimiter = ',', default_value = "none")]
    quantization: Vec<Mode>,
    /// Weights per scale and bias for int4 and int8.
    #[arg(long, value_name = "N", default_value_t = 32)]
    quant_group_size: i32,
    /// A prompt, sent as is (repeatable). Without --prompt or --prompt-file, the built-in set runs.
    #[arg(long = "prompt", value_name = "TEXT")]
    prompts: Vec<String>,
    /// Prompts in JSON Lines: one JSON string, or {"text": ..., "name": ..., "chat": bool}, a line.
    #[arg(long, value_name = "FILE")]
    prompt_file: Option<PathBuf>,
    /// Built-in prompts to run (short-chat, medium, long), alone or with the others.
    #[arg(long, value_delimiter = ',', value_name = "NAMES")]
    builtin: Vec<String>,
    /// Wrap every --prompt in the model's chat template.
    #[arg(long)]
    chat: bool,
    /// Measured runs per prompt and mode.
    #[arg(long, default_value_t = 5)]
    runs: usize,
    /// Unmeasured runs before them (MLX compiles and allocates on first use).
    #[arg(long, default_value_t = 1)]
    warmup_runs: usize,
    /// Tokens every run generates (EOS is ignored, so that every run makes as many).
    #[arg(long, default_value_t = 64)]
    max_new_tokens: usize,
    /// Steps of the backend's floor timed after each measured run.
    #[arg(long, default_value_t = 16)]
    floor_steps: usize,
    /// Also write the report as JSON here.
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Mode {
    None,
    Int4,
    Int8,
    #[value(name = "mlx-4bit")]
    Mlx4bit,
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Mode::None => "none",
            Mode::Int4 => "int4",
            Mode::Int8 => "int8",
            Mode::Mlx4bit => "mlx-4bit",
        }
    }
}

#[derive(Serialize)]
struct Report {
    schema_version: u32,
    machine: Machine,
    settings: Settings,
    prompts: Vec<Prompt>,
    modes: Vec<ModeReport>,
}

#[derive(Serialize)]
struct Settings {
    runs: usize,
    warmup_runs: usize,
    max_new_tokens: usize,
    quant_group_size: i32,
    sampling: &'static str,
}

#[derive(Serialize)]
struct ModeReport {
    mode: &'static str,
    model_path: PathBuf,
    linear_weight_bytes: usize,
    floor: Floor,
    prompts: Vec<PromptReport>,
}

#[derive(Serialize)]
struct Floor {
    /// The decode step's linear layers (the LM head included) as plain matmuls.
    matmuls: usize,
    /// One figure per measured run, each timed right after it.
    seconds_per_step: Summary,
    /// From the median.
    tok_s: f64,
}

#[derive(Serialize)]
struct PromptReport {
    prompt: String,
    prompt_tokens: usize,
    generated_tokens: usize,
    ttft_ms: Summary,
    prefill_tok_s: Summary,
    decode_tok_s: Option<Summary>,
    kv_cache_mb: Summary,
    /// The floor's tok/s, from the median of its timings after this prompt's runs.
    floor_tok_s: f64,
    /// Median decode tok/s over that floor.
    decode_vs_floor: Option<f64>,
    /// The decode steps of every measured run, summed.
    decode_steps: StepTimes,
    /// Time outside MLX's evaluation, in percent of a decode step.
    overhead_percent: f64,
    runs: Vec<RunTimes>,
}

pub fn run(args: GenerateArgs) -> Result<()> {
    if args.runs == 0 {
        bail!("--runs must be at least 1");
    }
    if args.max_new_tokens < 2 {
        bail!("--max-new-tokens must be at least 2: decode speed needs two tokens");
    }
    let machine = Machine::describe();
    let tokenizer = Tokenizer::load(&args.model_path).with_context(|| {
        format!(
            "cannot load the tokenizer of {} (run `cargo xtask models fetch`)",
            args.model_path.display()
        )
    })?;
    let prompts = prompts::tokenize(&prompt_specs(&args)?, &tokenizer)?;

    let runs_per_mode = prompts.len() * (args.warmup_runs + args.runs);
    let bar = ProgressBar::new((args.quantization.len() * runs_per_mode) as u64).with_style(
        ProgressStyle::with_template("{bar:30} {pos}/{len} runs, {elapsed} [{msg}]")
            .expect("a valid template"),
    );
    let mut modes = Vec::new();
    for &mode in &args.quantization {
        modes.push(measure_mode(mode, &args, &tokenizer, &prompts, &bar)?);
    }
    bar.finish_and_clear();

    let report = Report {
        schema_version: SCHEMA_VERSION,
        machine,
        settings: Settings {
            runs: args.runs,
            warmup_runs: args.warmup_runs,
            max_new_tokens: args.max_new_tokens,
            quant_group_size: args.quant_group_size,
            sampling: "greedy, EOS ignored",
        },
        prompts,
        modes,
    };
    print_tables(&report);
    if let Some(path) = &args.json {
        write_atomically(path, &serde_json::to_string_pretty(&report)?)?;
        eprintln!("report: {}", path.display());
    }
    Ok(())
}

fn prompt_specs(args: &GenerateArgs) -> Result<Vec<prompts::PromptSpec>> {
    let mut specs: Vec<_> = args
        .prompts
        .iter()
        .enumerate()
        .map(|(index, text)| prompts::PromptSpec {
            name: format!("prompt-{}", index + 1),
            text: text.clone(),
            chat: args.chat,
        })
        .collect();
    if let Some(path) = &args.prompt_file {
        specs.extend(prompts::from_file(path)?);
    }
    specs.extend(prompts::builtin_named(&args.builtin)?);
    if specs.is_empty() {
        specs = prompts::builtin();
    }
    Ok(specs)
}

fn measure_mode(
    mode: Mode,
    args: &GenerateArgs,
    tokenizer: &Tokenizer,
    prompts: &[Prompt],
    bar: &ProgressBar,
) -> Result<ModeReport> {
    let (dir, quantization) = match mode {
        Mode::None => (&args.model_path, Quantization::None),
        Mode::Int4 => (&args.model_path, Quantization::Int4),
        Mode::Int8 => (&args.model_path, Quantization::Int8),
        Mode::Mlx4bit => (
            args.quantized_model_path
                .as_ref()
                .context("the mlx-4bit mode needs --quantized-model-path DIR")?,
            Quantization::None,
        ),
    };
    bar.set_message(format!("{}: loading {}", mode.name(), dir.display()));
    let model = load_model(dir, quantization, args.quant_group_size, crate::KERNEL)
        .with_context(|| format!("cannot load the model in {}", dir.display()))?;

    bar.set_message(format!("{}: the backend's floor", mode.name()));
    let layers = floor::decode_layers(
        model.config(),
        layer_formats(dir, quantization, args.quant_group_size)?,
    )?;
    let stack = floor::MatmulStack::new(&layers)?;
    // Timed after each measured run, so that the floor sees the same machine as the runs.
    let mut floor_seconds = Vec::new();

    let mut reports = Vec::new();
    for prompt in prompts {
        let mut runs = Vec::new();
        for run in 0..args.warmup_runs + args.runs {
            let warmup = run < args.warmup_runs;
            bar.set_message(format!(
                "{}: {} ({} tokens), {}",
                mode.name(),
                prompt.name,
                prompt.token_ids.len(),
                if warmup { "warm-up" } else { "measured" }
            ));
            let times =
                timed_generation(&model, tokenizer, &prompt.token_ids, args.max_new_tokens)?;
            if !warmup {
                runs.push(times);
                floor_seconds.push(stack.seconds_per_step(args.floor_steps)?);
            }
            bar.inc(1);
        }
        reports.push(prompt_report(prompt, runs, &floor_seconds));
    }
    let seconds_per_step = Summary::of(floor_seconds).expect("at least one measured run");
    let floor = Floor {
        matmuls: layers.len(),
        seconds_per_step,
        tok_s: 1.0 / seconds_per_step.p50,
    };
    Ok(ModeReport {
        mode: mode.name(),
        model_path: dir.clone(),
        linear_weight_bytes: weight_bytes(&model).in_memory,
        floor,
        prompts: reports,
    })
}

/// The format each layer has once loaded: as stored in an MLX-quantized directory (config.json's
/// `"quantization"`, read as the loader reads it), else what the loader makes of a float layer.
fn layer_formats(
    dir: &Path,
    quantization: Quantization,
    group_size: i32,
) -> Result<impl Fn(&str) -> Result<WeightFormat>> {
    let path = dir.join("config.json");
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("cannot read {}", path.display()))?;
    let json: serde_json::Value =
        serde_json::from_str(&text).with_context(|| format!("{} is not JSON", path.display()))?;
    let stored = json
        .get("quantization")
        .filter(|value| !value.is_null())
        .cloned();
    let loader = QuantizedLoader::new(stored, quantization, group_size, crate::KERNEL);
    Ok(move |name: &str| -> Result<WeightFormat> {
        Ok(match loader.stored_quantization(name)? {
            Some(layer) => WeightFormat::Quantized {
                bits: layer.bits,
                group_size: layer.group_size,
            },
            None => match quantization.bits() {
                Some(bits) => WeightFormat::Quantized { bits, group_size },
                None => WeightFormat::Float32,
            },
        })
    })
}

/// `floor_seconds`: the floor timed after every run so far; the last `runs.len()` are this
/// prompt's.
fn prompt_report(prompt: &Prompt, runs: Vec<RunTimes>, floor_seconds: &[f64]) -> PromptReport {
    let own_floor = &floor_seconds[floor_seconds.len() - runs.len()..];
    let floor_tok_s = 1.0
        / Summary::of(own_floor.iter().copied())
            .expect("one per run")
            .p50;
    let summary = |value: fn(&RunTimes) -> f64| {
        Summary::of(runs.iter().map(value)).expect("at least one measured run")
    };
    let decode_tok_s = Summary::of(runs.iter().filter_map(|run| run.decode_tok_s));
    let mut steps = StepTimes::default();
    for run in &runs {
        steps.add(&run.decode_steps);
    }
    PromptReport {
        prompt: prompt.name.clone(),
        prompt_tokens: prompt.token_ids.len(),
        generated_tokens: runs[0].generated_tokens,
        ttft_ms: summary(|run| run.ttft_s * 1e3),
        prefill_tok_s: summary(|run| run.prefill_tok_s),
        decode_tok_s,
        kv_cache_mb: summary(|run| run.kv_cache_bytes as f64 / 1e6),
        floor_tok_s,
        decode_vs_floor: decode_tok_s.map(|decode| decode.p50 / floor_tok_s),
        overhead_percent: steps.overhead_fraction() * 100.0,
        decode_steps: steps,
        runs,
    }
}

fn print_tables(report: &Report) {
    println!(
        "| mode | prompt | prompt tokens | new tokens | TTFT ms (min / p50 / p95 / max) | prefill tok/s | decode tok/s | KV cache MB |"
    );
    println!("|---|---|---:|---:|---:|---:|---:|---:|");
    for mode in &report.modes {
        for prompt in &mode.prompts {
            println!(
                "| {} | {} | {} | {} | {} | {} | {} | {:.1} |",
                mode.mode,
                prompt.prompt,
                prompt.prompt_tokens,
                prompt.generated_tokens,
                prompt.ttft_ms.cell(0),
                prompt.prefill_tok_s.cell(1),
                prompt
                    .decode_tok_s
                    .map_or_else(|| "-".to_string(), |decode| decode.cell(1)),
                prompt.kv_cache_mb.p50,
            );
        }
    }
    println!();
    println!(
        "| mode | prompt | floor tok/s | decode tok/s (p50) | decode / floor | overhead % of a step | graph build ms | MLX eval ms | sampling ms | other ms |"
    );
    println!("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    for mode in &report.modes {
        for prompt in &mode.prompts {
            let steps = &prompt.decode_steps;
            let per_step_ms = |seconds: f64| seconds * 1e3 / steps.steps.max(1) as f64;
            println!(
                "| {} | {} | {:.1} | {} | {} | {:.1} % | {:.2} | {:.2} | {:.2} | {:.2} |",
                mode.mode,
                prompt.prompt,
                prompt.floor_tok_s,
                prompt
                    .decode_tok_s
                    .map_or_else(|| "-".to_string(), |decode| format!("{:.1}", decode.p50)),
                prompt
                    .decode_vs_floor
                    .map_or_else(|| "-".to_string(), |ratio| format!("{ratio:.2}")),
                prompt.overhead_percent,
                per_step_ms(steps.graph_build_s),
                per_step_ms(steps.mlx_eval_s),
                per_step_ms(steps.sampling_s),
                per_step_ms(steps.other_s),
            );
        }
    }
    let machine = &report.machine;
    println!(
        "\n{}, {} cores, {:.0} GiB, {}; MLX {} ({}, {}, BLAS {}); {}",
        machine.cpu,
        machine.cores,
        machine.memory_gib,
        machine.os,
        machine.mlx_version,
        machine.mlx_backend,
        machine.mlx_device,
        machine.blas,
        machine.date
    );
}
