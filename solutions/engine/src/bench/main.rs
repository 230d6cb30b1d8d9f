//! `bench`: the engine's benchmarks, run by `cargo xtask bench [NAME]`. Figures are measured side
//! by side in one run, so that their ratios hold even on a busy machine.

mod floor;
mod generate;
mod machine;
mod paged;
mod paged_attention;
mod prompts;
mod speculative;
mod summary;
mod timed_run;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use continuous_batching::{Batcher, Event, Request, Scheduler, SchedulerConfig};
use decode::{greedy, LanguageModel, Model as UncachedModel};
use kv_cache::{CachedModel, Model as CachedWeights};
use mlx_rs::{random, transforms::eval};
use paged_kv_cache::BLOCK_SIZE;
use prefix_cache::{PagedConfig, PagedScheduler};
use serde::Serialize;
use std::{
    collections::HashMap,
    path::{Path, PathBuf},
    time::Instant,
};

#[derive(Parser)]
#[command(name = "bench", about = "Benchmarks of the engine")]
struct Args {
    #[command(subcommand)]
    benchmark: Benchmark,
}

#[derive(Subcommand)]
enum Benchmark {
    /// Prompt sets across quantization modes: time to first token, prefill and decode speed,
    /// KV-cache memory, the backend's floor and the engine's overhead per step.
    Generate(generate::GenerateArgs),
    /// Decode tokens/s with and without the KV cache, at several prompt lengths.
    KvCache {
        /// A float model directory.
        #[arg(long, value_name = "DIR")]
        model_path: PathBuf,
        /// Prompt lengths to measure.
        #[arg(long, value_delimiter = ',', default_values_t = [32, 256, 1024])]
        prompt_lengths: Vec<usize>,
        /// Decode steps timed with the cache (without it, fewer: each step reruns the prompt).
        #[arg(long, default_value_t = 32)]
        steps: usize,
    },
    /// Aggregate tokens/s and per-request latency of continuous batching at several
    /// concurrencies.
    Batching {
        /// A model directory.
        #[arg(long, value_name = "DIR")]
        model_path: PathBuf,
        /// Numbers of requests running at once.
        #[arg(long, value_delimiter = ',', default_values_t = [1, 2, 4, 8, 16, 32])]
        concurrency: Vec<usize>,
        /// Prompt tokens of each request.
        #[arg(long, default_value_t = 64)]
        prompt_tokens: usize,
        /// Tokens each request generates.
        #[arg(long, default_value_t = 32)]
        new_tokens: usize,
        /// Also write the results as JSON here (for `cargo xtask bench batching`'s plot).
        #[arg(long, value_name = "FILE")]
        json: Option<PathBuf>,
        /// Run each concurrency once, untimed, before timing it: on a GPU the first steps at a
        /// new shape pay for kernel compilation and allocation.
        #[arg(long)]
        warmup: bool,
        /// Where the requests keep their keys and values: chapter 13's paged scheduler (the
        /// server's default) or chapter 10's dense one.
        #[arg(long, value_enum, default_value_t = KvLayout::Paged)]
        kv_cache: KvLayout,
    },
    /// Chapters 12-13: time to first token of a multi-turn chat with and without the prefix
    /// cache, and how many requests fit the same KV memory dense and paged.
    Paged(paged::PagedArgs),
    /// Chapter 12: one layer's decode attention over pages, gathered for MLX's fused attention
    /// vs the fused paged-attention CUDA kernel, at several context lengths and batch sizes.
    PagedAttention(paged_attention::PagedAttentionArgs),
    /// Chapter 14: greedy decode tokens/s plain and speculative, per drafter (prompt lookup, a
    /// draft model), with acceptance rates, on the same prompts in one run.
    Speculative(speculative::SpeculativeArgs),
    /// One request: prefill tokens/s, greedy decode tokens/s, and where a decode step's time
    /// goes (building the graph on the CPU vs evaluating it and reading the token back).
    SingleStream {
        /// A model directory.
        #[arg(long, value_name = "DIR")]
        model_path: PathBuf,
        /// Prompt tokens.
        #[arg(long, default_value_t = 256)]
        prompt_tokens: usize,
        /// Tokens generated (greedy; no end-of-sequence token stops it).
        #[arg(long, default_value_t = 128)]
        new_tokens: usize,
        /// Also write the results as JSON here.
        #[arg(long, value_name = "FILE")]
        json: Option<PathBuf>,
    },
}

/// The solutions run on MLX's fused quantized kernel; `--mine` on your chapter 9 code.
const KERNEL: quantized_matmul::Kernel = if cfg!(feature = "solutions") {
    quantized_matmul::Kernel::Mlx
} else {
    quantized_matmul::Kernel::Course
};

fn main() {
    if let Err(error) = run(Args::parse()) {
        eprintln!("error: {error:#}");
        std::process::exit(1);
    }
}

fn run(args: Args) -> Result<()> {
    match args.benchmark {
        Benchmark::Generate(args) => generate::run(args),
        Benchmark::Paged(args) => paged::run(args),
        Benchmark::PagedAttention(args) => paged_attention::run(args),
        Benchmark::Speculative(args) => speculative::run(args),
        Benchmark::KvCache {
            model_path,
            prompt_lengths,
            steps,
        } => kv_cache_bench(&model_path, &prompt_lengths, steps),
        Benchmark::Batching {
            model_path,
            concurrency,
            prompt_tokens,
            new_tokens,
            json,
            warmup,
            kv_cache,
        } => batching_bench(
            &model_path,
            &concurrency,
            BatchingShape {
                prompt_tokens,
                new_tokens,
            },
            kv_cache,
            warmup,
            json.as_deref(),
        ),
        Benchmark::SingleStream {
            model_path,
            prompt_tokens,
            new_tokens,
            json,
        } => single_stream_bench(&model_path, prompt_tokens, new_tokens, json.as_deref()),
    }
}

/// Seconds per decode step of `model` after a `prompt`, over `steps` steps, the prefill excluded.
/// The token fed back is always the same: the speed does not depend on which token it is.
fn seconds_per_step(model: &mut dyn LanguageModel, prompt: &[u32], steps: usize) -> Result<f64> {
    let mut sequence = prompt.to_vec();
    let logits = model.next_token_logits(&sequence)?; // prefill
    eval([&logits])?;
    let started = Instant::now();
    for _ in 0..steps {
        sequence.push(sequence[sequence.len() - 1]);
        let logits = model.next_token_logits(&sequence)?;
        eval([&logits])?;
    }
    Ok(started.elapsed().as_secs_f64() / steps as f64)
}

fn kv_cache_bench(dir: &Path, prompt_lengths: &[usize], steps: usize) -> Result<()> {
    let load_error = || format!("cannot load the model in {}", dir.display());
    let mut uncached = UncachedModel::load(dir).with_context(load_error)?;
    let cached_weights = CachedWeights::load(dir).with_context(load_error)?;
    let vocab = uncached.config().vocab_size;
    let (layers, kv_heads, head_dim) = {
        let config = uncached.config();
        (
            config.num_hidden_layers,
            config.num_key_value_heads,
            config.head_dim,
        )
    };

    let mut rows = Vec::new();
    for (index, &length) in prompt_lengths.iter().enumerate() {
        let prompt = random_prompt(vocab, length, length as u64)?;
        // Without the cache a step costs a whole prefill: time fewer of them.
        let uncached_steps = (steps * 32 / length.max(32)).clamp(2, steps);
        eprintln!(
            "[{}/{}] prompt of {length} tokens: {steps} steps with the cache, {uncached_steps} without",
            index + 1,
            prompt_lengths.len()
        );
        let mut with_cache = CachedModel::new(&cached_weights);
        let cached = seconds_per_step(&mut with_cache, &prompt, steps)?;
        let cache_bytes: usize = with_cache.cache().iter().map(|layer| layer.nbytes()).sum();
        let without = seconds_per_step(&mut uncached, &prompt, uncached_steps)?;
        rows.push((
            length,
            1.0 / without,
            1.0 / cached,
            without / cached,
            cache_bytes,
        ));
    }

    println!("| prompt tokens | no cache (tok/s) | KV cache (tok/s) | speedup | cache memory |");
    println!("|---:|---:|---:|---:|---:|");
    for (length, without, with, speedup, bytes) in rows {
        println!(
            "| {length} | {without:.2} | {with:.2} | {speedup:.1}x | {:.1} MB |",
            bytes as f64 / 1e6
        );
    }
    println!(
        "\ncache memory = layers {layers} x 2 (K and V) x kv heads {kv_heads} x head_dim {head_dim} \
         x capacity (a multiple of {}) x 4 bytes",
        kv_cache::STEP
    );
    Ok(())
}

/// `length` token ids drawn uniformly from the vocabulary: the speed does not depend on them.
fn random_prompt(vocab: i32, length: usize, seed: u64) -> Result<Vec<u32>> {
    let key = random::key(seed)?;
    Ok(random::randint::<_, i32>(0, vocab, &[length as i32], &key)?
        .as_slice::<i32>()
        .iter()
        .map(|&id| id as u32)
        .collect())
}

/// One concurrency level's figures.
#[derive(Serialize)]
struct BatchingRow {
    concurrency: usize,
    tokens_per_s: f64,
    mean_time_to_first_token_ms: f64,
    mean_inter_token_ms: f64,
    mean_latency_ms: f64,
}

/// The requests of one batching round: `prompt_tokens` in, `new_tokens` out, each.
#[derive(Clone, Copy)]
struct BatchingShape {
    prompt_tokens: usize,
    new_tokens: usize,
}

fn batching_bench(
    dir: &Path,
    concurrency: &[usize],
    shape: BatchingShape,
    layout: KvLayout,
    warmup: bool,
    json: Option<&Path>,
) -> Result<()> {
    let model = quantized_matmul::load_model(dir, quantized_matmul::Quantization::None, 32, KERNEL)
        .with_context(|| format!("cannot load the model in {}", dir.display()))?;
    let BatchingShape {
        prompt_tokens,
        new_tokens,
    } = shape;
    let mut rows = Vec::new();
    for (index, &requests) in concurrency.iter().enumerate() {
        eprintln!(
            "[{}/{}] {requests} concurrent requests of {prompt_tokens} + {new_tokens} tokens",
            index + 1,
            concurrency.len()
        );
        if warmup {
            let short = BatchingShape {
                new_tokens: new_tokens.min(4),
                ..shape
            };
            batching_round(&model, requests, short, layout)?;
        }
        rows.push(batching_round(&model, requests, shape, layout)?);
    }

    println!("| concurrent requests | aggregate tok/s | mean time to first token | mean time per token | mean request latency |");
    println!("|---:|---:|---:|---:|---:|");
    for row in &rows {
        println!(
            "| {} | {:.1} | {:.0} ms | {:.1} ms | {:.0} ms |",
            row.concurrency,
            row.tokens_per_s,
            row.mean_time_to_first_token_ms,
            row.mean_inter_token_ms,
            row.mean_latency_ms
        );
    }
    if let Some(path) = json {
        write_atomically(path, &serde_json::to_string_pretty(&rows)?)?;
    }
    Ok(())
}

/// Where `bench batching`'s requests keep their keys and values.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
enum KvLayout {
    Paged,
    Dense,
}

/// `requests` requests of `shape` submitted at once and run to the end by the scheduler.
fn batching_round(
    model: &CachedWeights,
    requests: usize,
    shape: BatchingShape,
    layout: KvLayout,
) -> Result<BatchingRow> {
    let BatchingShape {
        prompt_tokens,
        new_tokens,
    } = shape;
    let vocab = model.config().vocab_size;
    let config = SchedulerConfig {
        max_running: requests,
        token_budget: (requests * prompt_tokens).max(512),
        prefill_chunk: 256,
    };
    let mut scheduler: Box<dyn Batcher> = match layout {
        KvLayout::Dense => Box::new(Scheduler::new(model, config)?),
        KvLayout::Paged => {
            // Room for every request whole, plus a block each to spare.
            let blocks_per_request = (prompt_tokens + new_tokens).div_ceil(BLOCK_SIZE as usize) + 1;
            let config = PagedConfig {
                scheduler: config,
                num_blocks: requests * blocks_per_request,
                prefix_caching: true,
            };
            Box::new(PagedScheduler::new(model, config)?)
        }
    };
    for id in 0..requests {
        scheduler.add(Request {
            id: id as u64,
            prompt: random_prompt(vocab, prompt_tokens, id as u64)?,
            max_new_tokens: new_tokens,
            sampling: Default::default(),
            stop_token_ids: Vec::new(),
            constraint: None,
            logprobs: None,
        })?;
    }
    let started = Instant::now();
    let mut first: HashMap<u64, f64> = HashMap::new();
    let mut finished: HashMap<u64, f64> = HashMap::new();
    let mut tokens = 0;
    while !scheduler.is_idle() {
        let events = scheduler.step()?;
        let now = started.elapsed().as_secs_f64();
        for event in events {
            match event {
                Event::Token { id, .. } => {
                    tokens += 1;
                    first.entry(id).or_insert(now);
                }
                Event::Finished { id, .. } => {
                    finished.insert(id, now);
                }
            }
        }
    }
    let total = started.elapsed().as_secs_f64();
    let mean = |values: Vec<f64>| values.iter().sum::<f64>() / values.len().max(1) as f64;
    Ok(BatchingRow {
        concurrency: requests,
        tokens_per_s: tokens as f64 / total,
        mean_time_to_first_token_ms: mean(first.values().map(|t| t * 1e3).collect()),
        mean_inter_token_ms: mean(
            finished
                .iter()
                .map(|(id, end)| (end - first[id]) * 1e3 / (new_tokens - 1).max(1) as f64)
                .collect(),
        ),
        mean_latency_ms: mean(finished.values().map(|t| t * 1e3).collect()),
    })
}

/// Single-stream figures; times are medians over the decode steps.
#[derive(Serialize)]
struct SingleStreamRow {
    variant: &'static str,
    prompt_tokens: usize,
    new_tokens: usize,
    prefill_tokens_per_s: f64,
    decode_tokens_per_s: f64,
    /// Median time to build one step's graph (lazy: nothing runs on the device yet).
    median_build_ms: f64,
    /// Median time to evaluate it, take the argmax and read the token back.
    median_eval_ms: f64,
}

impl SingleStreamRow {
    /// Medians over the rounds (per step, over every round's steps).
    fn median_of(
        variant: &'static str,
        prompt_tokens: usize,
        new_tokens: usize,
        rounds: Vec<StreamTimes>,
    ) -> Self {
        let decode_s =
            |times: &StreamTimes| -> f64 { times.build_s.iter().chain(&times.eval_s).sum() };
        SingleStreamRow {
            variant,
            prompt_tokens,
            new_tokens,
            prefill_tokens_per_s: median(
                rounds
                    .iter()
                    .map(|t| prompt_tokens as f64 / t.prefill_s)
                    .collect(),
            ),
            decode_tokens_per_s: median(
                rounds
                    .iter()
                    .map(|t| new_tokens as f64 / decode_s(t))
                    .collect(),
            ),
            median_build_ms: median(rounds.iter().flat_map(|t| t.build_s.clone()).collect()) * 1e3,
            median_eval_ms: median(rounds.iter().flat_map(|t| t.eval_s.clone()).collect()) * 1e3,
        }
    }
}

/// `single-stream --json`: the engine's row at the top level (what platform/cuda/summarize.py
/// reads), the variant before the latest optimisation beside it.
#[derive(Serialize)]
struct SingleStreamReport<'a> {
    #[serde(flatten)]
    engine: &'a SingleStreamRow,
    before: &'a [SingleStreamRow],
}

/// Interleaved timed runs per variant in `single-stream`.
const SINGLE_STREAM_ROUNDS: usize = 3;

/// Per-step times of one greedy generation.
struct StreamTimes {
    prefill_s: f64,
    build_s: Vec<f64>,
    eval_s: Vec<f64>,
}

fn single_stream_bench(
    dir: &Path,
    prompt_tokens: usize,
    new_tokens: usize,
    json: Option<&Path>,
) -> Result<()> {
    // As the engine loads it: the solutions on MLX's fused kernels; and the same before it
    // joined projections and compiled SwiGLU (book: "Making it fast").
    let load = || {
        quantized_matmul::load_model(dir, quantized_matmul::Quantization::None, 32, KERNEL)
            .with_context(|| format!("cannot load the model in {}", dir.display()))
    };
    let variants = [
        ("engine", load()?),
        (
            "engine, before fusing operations",
            load()?.without_operation_fusion(),
        ),
    ];
    let prompt = random_prompt(variants[0].1.config().vocab_size, prompt_tokens, 0)?;
    // Untimed: on a GPU the first run compiles kernels and grows the allocator's pools.
    eprintln!("warm-up: {prompt_tokens} + {} tokens", new_tokens.min(16));
    for (_, weights) in &variants {
        generate_timed(weights, &prompt, new_tokens.min(16))?;
    }
    // Interleaved rounds, so that every variant sees the same machine.
    let mut times: Vec<Vec<StreamTimes>> = variants.iter().map(|_| Vec::new()).collect();
    for round in 1..=SINGLE_STREAM_ROUNDS {
        eprintln!("round {round}/{SINGLE_STREAM_ROUNDS}: {prompt_tokens} + {new_tokens} tokens per variant");
        for ((_, weights), times) in variants.iter().zip(&mut times) {
            times.push(generate_timed(weights, &prompt, new_tokens)?);
        }
    }
    let rows: Vec<SingleStreamRow> = variants
        .iter()
        .zip(times)
        .map(|((name, _), rounds)| {
            SingleStreamRow::median_of(name, prompt_tokens, new_tokens, rounds)
        })
        .collect();
    println!("| variant | prompt tokens | prefill tok/s | new tokens | decode tok/s | build / step | eval + read / step |");
    println!("|---|---:|---:|---:|---:|---:|---:|");
    for row in &rows {
        println!(
            "| {} | {} | {:.0} | {} | {:.1} | {:.2} ms | {:.2} ms |",
            row.variant,
            row.prompt_tokens,
            row.prefill_tokens_per_s,
            row.new_tokens,
            row.decode_tokens_per_s,
            row.median_build_ms,
            row.median_eval_ms
        );
    }
    println!(
        "decode, fused operations / before: {:.2}x",
        rows[0].decode_tokens_per_s / rows[1].decode_tokens_per_s
    );
    if let Some(path) = json {
        let (engine, before) = rows.split_first().expect("two variants");
        let report = SingleStreamReport { engine, before };
        write_atomically(path, &serde_json::to_string_pretty(&report)?)?;
    }
    Ok(())
}

/// Prefills `prompt`, then decodes `steps` greedy tokens, timing each part.
fn generate_timed(weights: &CachedWeights, prompt: &[u32], steps: usize) -> Result<StreamTimes> {
    let mut model = CachedModel::new(weights);
    let mut sequence = prompt.to_vec();
    let started = Instant::now();
    let logits = model.next_token_logits(&sequence)?; // [V]
    let mut token = greedy(&logits, &sequence)?;
    let prefill_s = started.elapsed().as_secs_f64();
    let (mut build_s, mut eval_s) = (Vec::new(), Vec::new());
    for _ in 0..steps {
        sequence.push(token);
        let started = Instant::now();
        let logits = model.next_token_logits(&sequence)?; // [V], lazy
        let built = Instant::now();
        token = greedy(&logits, &sequence)?;
        build_s.push((built - started).as_secs_f64());
        eval_s.push(built.elapsed().as_secs_f64());
    }
    Ok(StreamTimes {
        prefill_s,
        build_s,
        eval_s,
    })
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or(0.0)
}

/// Writes `text` to `path` through a temporary file beside it, so that a reader never sees half
/// a report.
fn write_atomically(path: &Path, text: &str) -> Result<()> {
    let partial = path.with_extension("partial");
    std::fs::write(&partial, text)
        .and_then(|()| std::fs::rename(&partial, path))
        .with_context(|| format!("cannot write {}", path.display()))
}
