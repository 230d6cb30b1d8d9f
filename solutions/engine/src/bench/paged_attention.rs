//! `bench paged-attention`: one layer's decode attention over pages, the two ways chapter 12
//! has: gathering each row's keys into a dense batch for MLX's fused attention, and the fused
//! CUDA kernel that walks the block tables. Side by side at each context length and batch size,
//! on pages whose blocks are interleaved across the rows as a busy server's are.

use crate::{median, write_atomically};
use anyhow::{Context, Result};
use mlx_rs::{random, Array, Dtype};
use paged_kv_cache::{BlockTable, PagePool, PagedAttentionKernel, StepPlan, BLOCK_SIZE};
use serde::Serialize;
use std::time::Instant;

#[derive(clap::Args)]
pub struct PagedAttentionArgs {
    /// Tokens each row attends to.
    #[arg(long, value_delimiter = ',', default_values_t = [256, 1024, 4096])]
    contexts: Vec<usize>,
    /// Rows decoding at once.
    #[arg(long, value_delimiter = ',', default_values_t = [1, 16, 64])]
    batches: Vec<usize>,
    /// Query heads, KV heads and head dimension (SmolLM2-135M's by default).
    #[arg(long, default_value_t = 9)]
    query_heads: i32,
    #[arg(long, default_value_t = 3)]
    kv_heads: i32,
    #[arg(long, default_value_t = 64)]
    head_dim: i32,
    /// bfloat16 (a GPU model's), float16 or float32.
    #[arg(long, default_value = "bfloat16", value_parser = ["bfloat16", "float16", "float32"])]
    dtype: String,
    /// Timed calls of each path per shape (after three untimed ones).
    #[arg(long, default_value_t = 30)]
    iterations: usize,
    /// Also write the results as JSON here.
    #[arg(long, value_name = "FILE")]
    json: Option<std::path::PathBuf>,
}

/// One shape's median times; `fused_ms` is `None` where the kernel cannot run (no CUDA).
#[derive(Serialize)]
struct Row {
    context: usize,
    batch: usize,
    gather_sdpa_ms: f64,
    fused_ms: Option<f64>,
    speedup: Option<f64>,
}

pub fn run(args: PagedAttentionArgs) -> Result<()> {
    let dtype = match args.dtype.as_str() {
        "float16" => Dtype::Float16,
        "float32" => Dtype::Float32,
        _ => Dtype::Bfloat16,
    };
    let mut rows = Vec::new();
    for &context in &args.contexts {
        for &batch in &args.batches {
            eprintln!("context {context}, batch {batch}");
            rows.push(time_shape(&args, dtype, context, batch)?);
        }
    }
    println!(
        "decode attention, one layer: {} query heads, {} KV heads, head dim {}, {}, blocks of {BLOCK_SIZE} tokens interleaved across rows; median of {} calls",
        args.query_heads, args.kv_heads, args.head_dim, args.dtype, args.iterations
    );
    println!("| context | batch | gather + sdpa | fused kernel | speedup |");
    println!("|---:|---:|---:|---:|---:|");
    let or_na = |value: Option<f64>, unit: &str| {
        value.map_or("n/a (no CUDA)".to_string(), |v| format!("{v:.3}{unit}"))
    };
    for row in &rows {
        println!(
            "| {} | {} | {:.3} ms | {} | {} |",
            row.context,
            row.batch,
            row.gather_sdpa_ms,
            or_na(row.fused_ms, " ms"),
            or_na(row.speedup, "x"),
        );
    }
    if let Some(path) = &args.json {
        write_atomically(path, &serde_json::to_string_pretty(&rows)?)?;
    }
    Ok(())
}

/// Builds the pages of `batch` rows of `context` tokens and times both paths on them,
/// alternating calls so that both see the same machine.
fn time_shape(
    args: &PagedAttentionArgs,
    dtype: Dtype,
    context: usize,
    batch: usize,
) -> Result<Row> {
    let blocks_per_row = context.div_ceil(BLOCK_SIZE as usize);
    let mut pool = PagePool::new(1, batch * blocks_per_row);
    let blocks = pool
        .allocate(batch * blocks_per_row)
        .context("allocating the pages")?;
    // Row r takes blocks r, r + B, r + 2B...: each row's blocks are scattered over the pages.
    let row_blocks = |row: usize| blocks.iter().copied().skip(row).step_by(batch).collect();
    let tables = |length: usize| -> Vec<BlockTable> {
        (0..batch)
            .map(|row| BlockTable::with_blocks(row_blocks(row), length))
            .collect()
    };
    let plan = |tables: &[BlockTable], new_tokens: usize| {
        let rows: Vec<&BlockTable> = tables.iter().collect();
        StepPlan::new(&rows, new_tokens)
    };
    let (batch_i32, context_i32) = (batch as i32, context as i32);
    let kv_shape = [batch_i32, args.kv_heads, context_i32, args.head_dim];
    let pages = &mut pool.layers_mut()[0];
    pages.write(
        &seeded(&kv_shape, dtype, 1)?,
        &seeded(&kv_shape, dtype, 2)?,
        &plan(&tables(0), context)?,
    )?;
    // The decode step: each row's last token is the one attending.
    let step = plan(&tables(context - 1), 1)?;
    let queries = seeded(&[batch_i32, args.query_heads, 1, args.head_dim], dtype, 3)?;
    let scale = 1.0 / (args.head_dim as f32).sqrt();
    let fused_runs =
        PagedAttentionKernel::for_decode(&queries, pages)? == PagedAttentionKernel::Fused;
    let call = |kernel| -> Result<f64> {
        let started = Instant::now();
        let out = pages.decode_attention(&queries, &step, scale, kernel)?;
        out.eval()?;
        Ok(started.elapsed().as_secs_f64() * 1e3)
    };
    let (mut gather, mut fused) = (Vec::new(), Vec::new());
    for iteration in 0..args.iterations + 3 {
        let gather_ms = call(PagedAttentionKernel::Gather)?;
        let fused_ms = if fused_runs {
            Some(call(PagedAttentionKernel::Fused)?)
        } else {
            None
        };
        if iteration >= 3 {
            gather.push(gather_ms);
            fused.extend(fused_ms);
        }
    }
    let gather_sdpa_ms = median(gather);
    let fused_ms = fused_runs.then(|| median(fused));
    Ok(Row {
        context,
        batch,
        gather_sdpa_ms,
        fused_ms,
        speedup: fused_ms.map(|fused| gather_sdpa_ms / fused),
    })
}

/// A standard-normal array of `shape` in `dtype`, the same for the same `seed`.
fn seeded(shape: &[i32], dtype: Dtype, seed: u64) -> Result<Array> {
    let key = random::key(seed)?;
    Ok(random::normal::<f32>(shape, None, None, &key)?.as_dtype(dtype)?)
}
