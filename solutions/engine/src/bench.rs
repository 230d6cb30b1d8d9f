//! `bench`: the engine's benchmarks, run by `cargo xtask bench NAME`. Figures are measured side
//! by side in one run, so that their ratios hold even on a busy machine.

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use decode::{LanguageModel, Model as UncachedModel};
use kv_cache::{CachedModel, Model as CachedWeights};
use mlx_rs::{random, transforms::eval};
use std::{path::PathBuf, time::Instant};

#[derive(Parser)]
#[command(name = "bench", about = "Benchmarks of the engine")]
struct Args {
    #[command(subcommand)]
    benchmark: Benchmark,
}

#[derive(Subcommand)]
enum Benchmark {
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
}

fn main() {
    if let Err(error) = run(Args::parse()) {
        eprintln!("error: {error:#}");
        std::process::exit(1);
    }
}

fn run(args: Args) -> Result<()> {
    match args.benchmark {
        Benchmark::KvCache {
            model_path,
            prompt_lengths,
            steps,
        } => kv_cache_bench(&model_path, &prompt_lengths, steps),
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

fn kv_cache_bench(dir: &std::path::Path, prompt_lengths: &[usize], steps: usize) -> Result<()> {
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
        let key = random::key(length as u64)?;
        let prompt: Vec<u32> = random::randint::<_, i32>(0, vocab, &[length as i32], &key)?
            .as_slice::<i32>()
            .iter()
            .map(|&id| id as u32)
            .collect();
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
        rows.push((length, 1.0 / without, 1.0 / cached, without / cached, cache_bytes));
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
