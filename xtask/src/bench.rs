//! `cargo xtask bench NAME`: builds the engine's `bench` binary (release) and runs one benchmark
//! on the built-in model; `batching` also draws its table as an SVG plot.

use crate::{cargo::workspace_root, models, run::run_engine_binary};
use anyhow::{Context, Result};
use clap::{Args, ValueEnum};
use plotters::prelude::*;
use serde::Deserialize;
use std::path::Path;

#[derive(Args)]
pub struct BenchArgs {
    benchmark: Benchmark,
    /// Measure your chapters instead of the solutions.
    #[arg(long)]
    mine: bool,
    /// Options of the benchmark, like --prompt-lengths 32,256 or --concurrency 1,2,4.
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    args: Vec<String>,
}

#[derive(Clone, Copy, ValueEnum)]
enum Benchmark {
    /// Decode tokens/s with and without the KV cache at prompt lengths 32, 256 and 1024.
    KvCache,
    /// Continuous batching: aggregate tokens/s and latency at 1 to 32 concurrent requests.
    Batching,
}

pub fn run(args: BenchArgs) -> Result<()> {
    let model = models::ready_model_dir(None)?;
    let name = match args.benchmark {
        Benchmark::KvCache => "kv-cache",
        Benchmark::Batching => "batching",
    };
    let mut bench_args = vec![name.to_string()];
    if !args.args.iter().any(|arg| arg.starts_with("--model-path")) {
        bench_args.extend(["--model-path".to_string(), model.display().to_string()]);
    }
    let out = workspace_root().join("target").join("bench");
    let json = out.join("batching.json");
    if let Benchmark::Batching = args.benchmark {
        std::fs::create_dir_all(&out)
            .with_context(|| format!("cannot create {}", out.display()))?;
        bench_args.extend(["--json".to_string(), json.display().to_string()]);
    }
    bench_args.extend(args.args);
    run_engine_binary("bench", args.mine, &bench_args)?;
    if let Benchmark::Batching = args.benchmark {
        let svg = out.join("batching.svg");
        plot_batching(&json, &svg)?;
        eprintln!("plot: {}", svg.display());
    }
    Ok(())
}

#[derive(Deserialize)]
struct BatchingRow {
    concurrency: usize,
    tokens_per_s: f64,
    mean_inter_token_ms: f64,
}

/// Aggregate tokens/s (left axis) and time per token of one request (right axis) against the
/// number of concurrent requests.
fn plot_batching(json: &Path, svg: &Path) -> Result<()> {
    let text =
        std::fs::read_to_string(json).with_context(|| format!("cannot read {}", json.display()))?;
    let rows: Vec<BatchingRow> = serde_json::from_str(&text)
        .with_context(|| format!("{} is not the batching benchmark's output", json.display()))?;
    let max_x = rows.iter().map(|row| row.concurrency).max().unwrap_or(1) as f64;
    let max_rate = rows.iter().map(|row| row.tokens_per_s).fold(1.0, f64::max);
    let max_ms = rows
        .iter()
        .map(|row| row.mean_inter_token_ms)
        .fold(1.0, f64::max);

    let root = SVGBackend::new(svg, (720, 420)).into_drawing_area();
    let draw = || -> std::result::Result<(), Box<dyn std::error::Error>> {
        root.fill(&WHITE)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(
                "Continuous batching: throughput and per-token latency",
                ("sans-serif", 20),
            )
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(60)
            .right_y_label_area_size(60)
            .build_cartesian_2d(0.0..max_x * 1.05, 0.0..max_rate * 1.15)?
            .set_secondary_coord(0.0..max_x * 1.05, 0.0..max_ms * 1.15);
        chart
            .configure_mesh()
            .x_desc("concurrent requests")
            .y_desc("aggregate tokens/s")
            .draw()?;
        chart
            .configure_secondary_axes()
            .y_desc("ms per token (one request)")
            .draw()?;
        let rate: Vec<(f64, f64)> = rows
            .iter()
            .map(|row| (row.concurrency as f64, row.tokens_per_s))
            .collect();
        let latency: Vec<(f64, f64)> = rows
            .iter()
            .map(|row| (row.concurrency as f64, row.mean_inter_token_ms))
            .collect();
        chart
            .draw_series(LineSeries::new(rate.clone(), BLUE.stroke_width(2)))?
            .label("aggregate tokens/s")
            .legend(|(x, y)| PathElement::new([(x, y), (x + 20, y)], BLUE));
        chart.draw_series(
            rate.iter()
                .map(|&point| Circle::new(point, 4, BLUE.filled())),
        )?;
        chart
            .draw_secondary_series(LineSeries::new(latency.clone(), RED.stroke_width(2)))?
            .label("ms per token")
            .legend(|(x, y)| PathElement::new([(x, y), (x + 20, y)], RED));
        chart.draw_secondary_series(
            latency
                .iter()
                .map(|&point| Circle::new(point, 4, RED.filled())),
        )?;
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .position(SeriesLabelPosition::UpperLeft)
            .draw()?;
        root.present()?;
        Ok(())
    };
    draw().map_err(|error| anyhow::anyhow!("cannot draw {}: {error}", svg.display()))
}
