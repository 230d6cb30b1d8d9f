//! `bench paged`: what chapters 12 and 13 buy. A multi-turn chat (each turn resends the whole
//! history) timed to the first token with and without the prefix cache, turn by turn, side by
//! side in one run; and how many requests of mixed lengths fit the same KV memory in chapter 10's
//! dense batch and in chapter 12's pages, counted by the two caches' own accounting.

use crate::{median, random_prompt, write_atomically, KERNEL};
use anyhow::{Context, Result};
use continuous_batching::{BatchKvCache, Event, Request, SchedulerConfig};
use kv_cache::Model;
use mlx_rs::{ops, Dtype};
use paged_kv_cache::{BlockTable, PagePool, BLOCK_SIZE};
use prefix_cache::{PagedConfig, PagedScheduler};
use serde::Serialize;
use std::time::Instant;

#[derive(clap::Args)]
pub struct PagedArgs {
    /// A model directory.
    #[arg(long, value_name = "DIR")]
    model_path: std::path::PathBuf,
    /// Turns of the chat.
    #[arg(long, default_value_t = 6)]
    turns: usize,
    /// Tokens of the system prompt, of each user message, and of each answer (generated).
    #[arg(long, default_value_t = 200)]
    system_tokens: usize,
    #[arg(long, default_value_t = 40)]
    user_tokens: usize,
    #[arg(long, default_value_t = 32)]
    answer_tokens: usize,
    /// KV memory for the capacity count, in MiB (float32 keys and values of this model).
    #[arg(long, default_value_t = 512)]
    kv_memory_mib: usize,
    /// Also write the results as JSON here (for `cargo xtask bench paged`'s plot).
    #[arg(long, value_name = "FILE")]
    json: Option<std::path::PathBuf>,
}

/// One turn of the chat: its prompt, and the time to its first token both ways.
#[derive(Serialize)]
struct TurnRow {
    turn: usize,
    prompt_tokens: usize,
    cached_tokens: usize,
    ttft_ms_without: f64,
    ttft_ms_with: f64,
}

#[derive(Serialize)]
struct CapacityRow {
    kv_memory_mib: usize,
    bytes_per_token: usize,
    requests_offered: usize,
    requests_dense: usize,
    requests_paged: usize,
}

#[derive(Serialize)]
struct Report {
    turns: Vec<TurnRow>,
    capacity: CapacityRow,
}

pub fn run(args: PagedArgs) -> Result<()> {
    let dir = &args.model_path;
    let model = quantized_matmul::load_model(dir, quantized_matmul::Quantization::None, 32, KERNEL)
        .with_context(|| format!("cannot load the model in {}", dir.display()))?;
    let turns = chat_ttft(&model, &args)?;
    println!(
        "| turn | prompt tokens | from the prefix cache | TTFT without | TTFT with | speedup |"
    );
    println!("|---:|---:|---:|---:|---:|---:|");
    for row in &turns {
        println!(
            "| {} | {} | {} | {:.0} ms | {:.0} ms | {:.2}x |",
            row.turn,
            row.prompt_tokens,
            row.cached_tokens,
            row.ttft_ms_without,
            row.ttft_ms_with,
            row.ttft_ms_without / row.ttft_ms_with
        );
    }
    let capacity = capacity(&model, args.kv_memory_mib)?;
    println!(
        "\n{} requests of mixed lengths (prompts of 32 to 1024 tokens, 256 generated) offered to {} MiB of float32 KV memory ({} bytes a token):",
        capacity.requests_offered, capacity.kv_memory_mib, capacity.bytes_per_token
    );
    println!("| KV layout | requests that fit |\n|---|---:|");
    println!("| dense batch (chapter 10) | {} |", capacity.requests_dense);
    println!(
        "| pages of {BLOCK_SIZE} (chapter 12) | {} |",
        capacity.requests_paged
    );
    if let Some(path) = &args.json {
        write_atomically(
            path,
            &serde_json::to_string_pretty(&Report { turns, capacity })?,
        )?;
    }
    Ok(())
}

/// The chat, turn by turn: each turn's prompt is the history so far and a new user message; its
/// answer, generated greedily, joins the history. Each turn's time to first token is the median
/// of `REPEATS` prompts (the history and each time another user message, so that the prefix
/// cache holds the history and not the message), without and with the prefix cache, alternately.
fn chat_ttft(model: &Model, args: &PagedArgs) -> Result<Vec<TurnRow>> {
    const REPEATS: usize = 3;
    let vocab = model.config().vocab_size;
    let history_tokens =
        args.system_tokens + args.turns * (args.user_tokens + args.answer_tokens) + 1;
    let config = |prefix_caching| PagedConfig {
        scheduler: SchedulerConfig {
            max_running: 1,
            token_budget: 512,
            prefill_chunk: 256,
        },
        // Room for the history of every measurement of the chat, which the cache keeps.
        num_blocks: (REPEATS + 1) * history_tokens.div_ceil(BLOCK_SIZE as usize) * 2,
        prefix_caching,
    };
    let mut without = PagedScheduler::new(model, config(false))?;
    let mut with = PagedScheduler::new(model, config(true))?;
    let mut history = random_prompt(vocab, args.system_tokens, 1)?;
    // Untimed: the first forward passes at a new shape pay for allocation.
    run_one(&mut without, 0, &history, 2)?;
    let mut rows = Vec::new();
    let mut id = 1;
    for turn in 1..=args.turns {
        eprintln!(
            "[{turn}/{}] turn of {} prompt tokens",
            args.turns,
            history.len() + args.user_tokens
        );
        let (mut plain, mut cached, mut cached_tokens) = (Vec::new(), Vec::new(), 0);
        for repeat in 0..REPEATS {
            let seed = 1000 * turn as u64 + repeat as u64;
            let prompt = [
                history.clone(),
                random_prompt(vocab, args.user_tokens, seed)?,
            ]
            .concat();
            let order = if repeat % 2 == 0 {
                [false, true]
            } else {
                [true, false]
            };
            for use_cache in order {
                id += 1;
                let scheduler = if use_cache { &mut with } else { &mut without };
                let (seconds, from_cache, _) = run_one(scheduler, id, &prompt, 1)?;
                if use_cache {
                    cached.push(seconds);
                    cached_tokens = from_cache;
                } else {
                    plain.push(seconds);
                }
            }
        }
        let message = random_prompt(vocab, args.user_tokens, 1000 * turn as u64)?;
        let prompt = [history.clone(), message].concat();
        id += 1;
        let (_, _, answer) = run_one(&mut with, id, &prompt, args.answer_tokens)?;
        rows.push(TurnRow {
            turn,
            prompt_tokens: prompt.len(),
            cached_tokens,
            ttft_ms_without: median(plain) * 1e3,
            ttft_ms_with: median(cached) * 1e3,
        });
        history = [prompt, answer].concat();
    }
    Ok(rows)
}

/// Runs one request alone to the end: seconds to its first token, prompt tokens from the prefix
/// cache, and its tokens.
fn run_one(
    scheduler: &mut PagedScheduler,
    id: u64,
    prompt: &[u32],
    new_tokens: usize,
) -> Result<(f64, usize, Vec<u32>)> {
    scheduler.add(Request {
        id,
        prompt: prompt.to_vec(),
        max_new_tokens: new_tokens,
        sampling: Default::default(),
        stop_token_ids: Vec::new(),
        constraint: None,
        logprobs: None,
    })?;
    // The request may finish in the step of its first token: read the cache's counter, not
    // the running request.
    let hits_before = scheduler.cache().stats().hit_tokens;
    let started = Instant::now();
    let (mut first, mut tokens) = (None, Vec::new());
    while !scheduler.is_idle() {
        for event in scheduler.step()? {
            if let Event::Token { token, .. } = event {
                first.get_or_insert_with(|| started.elapsed().as_secs_f64());
                tokens.push(token);
            }
        }
    }
    let cached = scheduler.cache().stats().hit_tokens - hits_before;
    Ok((first.unwrap_or(0.0), cached, tokens))
}

/// Requests of seeded mixed lengths, in order, until each layout's memory is full: the dense
/// batch counted by chapter 10's `BatchKvCache::nbytes` on one layer, the pages by chapter 12's
/// blocks. One layer stands for all: every layer holds the same positions.
fn capacity(model: &Model, kv_memory_mib: usize) -> Result<CapacityRow> {
    let config = model.config();
    let (layers, heads, head_dim) = (
        config.num_hidden_layers as usize,
        config.num_key_value_heads,
        config.head_dim,
    );
    let bytes_per_token = 2 * layers * heads as usize * head_dim as usize * 4;
    let budget = kv_memory_mib << 20;
    let lengths: Vec<usize> = random_prompt(1024 - 32, 256, 7)?
        .into_iter()
        .map(|extra| 32 + extra as usize + 256)
        .collect();

    let mut dense = BatchKvCache::new();
    let mut requests_dense = 0;
    for &length in &lengths {
        let keys = ops::zeros_dtype(&[1, heads, length as i32, head_dim], Dtype::Float32)?;
        dense.add(&keys, &keys)?;
        if dense.nbytes() * layers > budget {
            break;
        }
        requests_dense += 1;
    }

    let block_bytes = bytes_per_token * BLOCK_SIZE as usize;
    let mut pool = PagePool::new(1, budget / block_bytes);
    let mut requests_paged = 0;
    for &length in &lengths {
        // The table is dropped, its blocks stay taken: the requests are all running.
        if BlockTable::new().reserve(&mut pool, length).is_err() {
            break;
        }
        requests_paged += 1;
    }
    Ok(CapacityRow {
        kv_memory_mib,
        bytes_per_token,
        requests_offered: lengths.len(),
        requests_dense,
        requests_paged,
    })
}
