//! `cargo xtask bench --compare`: in one session, on the same model, prompt token ids and token
//! counts, our engine (float32 and 4-bit), mlx-lm (float32 and 4-bit, the same MLX) and
//! llama.cpp (the original Q4_1 GGUF); then the 16-stream batching throughput. Prints the
//! markdown table for the book, writes it with a JSON report and an SVG plot to target/bench/.

use super::{
    bench_dir, build_bench_binary,
    peers::{self, Job, JobPrompt, PeerRun},
    plots::{self, CompareBar},
    run_built, run_generate, GenerateOptions, BUILTIN_4BIT,
};
use crate::models;
use anyhow::{bail, Context, Result};
use indicatif::{ProgressBar, ProgressStyle};
use serde::{Deserialize, Serialize};
use std::{fmt::Write as _, path::Path};

/// Bump when a field of the JSON report changes meaning or goes away.
const SCHEMA_VERSION: u32 = 1;
const OURS: &str = "tiny-llm (ours)";
const MLX_LM: &str = "mlx-lm 0.32.2";
const LLAMA_CPP: &str = "llama.cpp (llama-cpp-python 0.3.36)";

/// The parts of the engine's `bench generate` report that the comparison reads.
#[derive(Deserialize)]
struct EngineReport {
    schema_version: u32,
    machine: serde_json::Value,
    prompts: Vec<EnginePrompt>,
    modes: Vec<EngineMode>,
}

#[derive(Deserialize)]
struct EnginePrompt {
    name: String,
    token_ids: Vec<u32>,
}

#[derive(Deserialize)]
struct EngineMode {
    mode: String,
    floor: EngineFloor,
    prompts: Vec<EnginePromptReport>,
}

#[derive(Deserialize, Serialize, Clone, Copy)]
struct EngineFloor {
    tok_s: f64,
}

#[derive(Deserialize)]
struct EnginePromptReport {
    prompt: String,
    prompt_tokens: usize,
    ttft_ms: Median,
    prefill_tok_s: Median,
    decode_tok_s: Option<Median>,
    decode_vs_floor: Option<f64>,
    overhead_percent: f64,
}

#[derive(Deserialize)]
struct Median {
    p50: f64,
}

/// One system on one prompt: medians over the measured runs.
#[derive(Serialize, Clone)]
struct Row {
    system: &'static str,
    weights: &'static str,
    prompt: String,
    prompt_tokens: usize,
    ttft_ms: f64,
    prefill_tok_s: f64,
    decode_tok_s: f64,
}

#[derive(Serialize)]
struct FloorFigures {
    prompt: String,
    floor_tok_s: f64,
    engine_decode_tok_s: f64,
    decode_vs_floor: Option<f64>,
    overhead_percent: f64,
}

#[derive(Serialize)]
struct Batching {
    streams: usize,
    /// Tokens of every stream over the time between the first and the last token of each
    /// (prefill left out), summed: 1000 * streams / mean time per token.
    aggregate_decode_tok_s: f64,
    /// All tokens over the whole run, prefill included.
    aggregate_tok_s: f64,
    vs_llama_cpp_decode: f64,
}

#[derive(Serialize)]
struct Report {
    schema_version: u32,
    machine: serde_json::Value,
    /// Engine float32 over mlx-lm float32 (same MLX, same precision): geometric mean over the
    /// prompts of the ratio of medians.
    decode_ratio_vs_mlx_lm: f64,
    prefill_ratio_vs_mlx_lm: f64,
    /// Engine 4-bit over llama.cpp on the Q4_1 GGUF: the same weights (Q4_1 converts losslessly
    /// to MLX's 4-bit affine format with groups of 32).
    decode_ratio_vs_llama_cpp: f64,
    prefill_ratio_vs_llama_cpp: f64,
    /// Engine float32 over llama.cpp Q4_1: the engine's fastest mode against llama.cpp's.
    decode_ratio_f32_vs_llama_cpp: f64,
    /// Engine 4-bit over mlx-lm 4-bit.
    decode_ratio_4bit_vs_mlx_lm_4bit: f64,
    prefill_ratio_4bit_vs_mlx_lm_4bit: f64,
    floor_f32: Vec<FloorFigures>,
    batching: Batching,
    settings: Settings,
    results: Vec<Row>,
    peer_runs: Vec<PeerRun>,
}

#[derive(Serialize)]
struct Settings {
    runs: usize,
    warmup_runs: usize,
    max_new_tokens: usize,
    threads: usize,
    sampling: &'static str,
}

pub fn run(options: &GenerateOptions) -> Result<()> {
    let out = bench_dir()?;
    let runs = options.runs.unwrap_or(3);
    let warmup_runs = options.warmup_runs.unwrap_or(1);
    let max_new_tokens = options.max_new_tokens.unwrap_or(64);
    if !options.quantization.is_empty() {
        bail!("--compare runs the modes none and mlx-4bit; leave out --quantization");
    }
    // Every MLX program here (ours and mlx-lm) runs its f32 GEMMs on OpenBLAS with these threads.
    std::env::set_var("OPENBLAS_NUM_THREADS", options.threads.to_string());
    std::env::set_var("OMP_NUM_THREADS", options.threads.to_string());

    let python = peers::ready_python(&out)?;
    let float_dir = models::ready_model_dir(None)?;
    let quantized_dir = models::ready_model_dir(Some(BUILTIN_4BIT))?;
    let gguf = models::ready_gguf(None)?;

    let mut engine_options = options.clone();
    if options.prompts.is_empty() && options.prompt_file.is_none() && options.builtin.is_empty() {
        engine_options.builtin = vec!["medium".to_string()];
    }
    engine_options.max_new_tokens = Some(max_new_tokens);
    engine_options.warmup_runs = Some(warmup_runs);
    let engine_json = out.join("compare-engine.json");
    let bench = build_bench_binary(options.mine)?;
    eprintln!("[1/3] our engine: float32 and 4-bit");
    run_generate(
        &engine_options,
        &["none".to_string(), "mlx-4bit".to_string()],
        Some(runs),
        Some(&engine_json),
        Some(&bench),
    )?;
    let engine = read_engine_report(&engine_json)?;

    eprintln!("[2/3] the peers: mlx-lm (float32, 4-bit), llama.cpp (Q4_1 GGUF)");
    let prompts: Vec<JobPrompt> = engine
        .prompts
        .iter()
        .map(|prompt| JobPrompt {
            name: &prompt.name,
            ids: &prompt.token_ids,
        })
        .collect();
    let peer_jobs = [
        ("mlx_lm_bench.py", "mlx-lm-f32", float_dir.as_path(), "f32"),
        (
            "mlx_lm_bench.py",
            "mlx-lm-4bit",
            quantized_dir.as_path(),
            "4-bit",
        ),
        ("llama_cpp_bench.py", "llama-cpp", gguf.as_path(), "Q4_1"),
    ];
    let bar = ProgressBar::new((peer_jobs.len() * prompts.len() * runs) as u64).with_style(
        ProgressStyle::with_template("{bar:30} {pos}/{len} peer runs, {elapsed} [{msg}]")
            .expect("a valid template"),
    );
    let mut peer_runs = Vec::new();
    for (script, name, model, weights) in peer_jobs {
        bar.set_message(name);
        let job = Job {
            model,
            weights,
            threads: options.threads,
            prompts: prompts
                .iter()
                .map(|prompt| JobPrompt {
                    name: prompt.name,
                    ids: prompt.ids,
                })
                .collect(),
            max_new_tokens,
            runs,
            warmup_runs,
        };
        let job_file = out.join(format!("{name}-job.json"));
        let log = out.join(format!("{name}.log"));
        peer_runs.extend(peers::run_script(
            &python, script, &job, &job_file, &log, &bar,
        )?);
    }
    bar.finish_and_clear();

    eprintln!(
        "[3/3] our engine: {} concurrent streams (continuous batching, float32)",
        options.concurrency
    );
    let batching_json = out.join("compare-batching.json");
    let batching_args = [
        "batching",
        "--model-path",
        &float_dir.display().to_string(),
        "--concurrency",
        &options.concurrency.to_string(),
        "--new-tokens",
        &max_new_tokens.to_string(),
        "--json",
        &batching_json.display().to_string(),
    ]
    .map(String::from);
    run_built(&bench, &batching_args)?;
    let batching_row = plots::read_batching(&batching_json)?
        .into_iter()
        .next()
        .context("the batching benchmark wrote no row")?;

    let rows = rows(&engine, &peer_runs)?;
    let ratio = |system_a, weights_a, system_b, weights_b, metric: fn(&Row) -> f64| {
        geometric_mean_ratio(&rows, (system_a, weights_a), (system_b, weights_b), metric)
    };
    let decode = |row: &Row| row.decode_tok_s;
    let prefill = |row: &Row| row.prefill_tok_s;
    let llama_decode = median(
        rows.iter()
            .filter(|row| row.system == LLAMA_CPP)
            .map(decode),
    );
    let aggregate_decode = 1000.0 * options.concurrency as f64 / batching_row.mean_inter_token_ms;
    let f32_mode = engine_mode(&engine, "none")?;
    let report = Report {
        schema_version: SCHEMA_VERSION,
        machine: engine.machine.clone(),
        decode_ratio_vs_mlx_lm: ratio(OURS, "f32", MLX_LM, "f32", decode),
        prefill_ratio_vs_mlx_lm: ratio(OURS, "f32", MLX_LM, "f32", prefill),
        decode_ratio_vs_llama_cpp: ratio(OURS, "4-bit", LLAMA_CPP, "Q4_1", decode),
        prefill_ratio_vs_llama_cpp: ratio(OURS, "4-bit", LLAMA_CPP, "Q4_1", prefill),
        decode_ratio_f32_vs_llama_cpp: ratio(OURS, "f32", LLAMA_CPP, "Q4_1", decode),
        decode_ratio_4bit_vs_mlx_lm_4bit: ratio(OURS, "4-bit", MLX_LM, "4-bit", decode),
        prefill_ratio_4bit_vs_mlx_lm_4bit: ratio(OURS, "4-bit", MLX_LM, "4-bit", prefill),
        floor_f32: f32_mode
            .prompts
            .iter()
            .map(|prompt| FloorFigures {
                prompt: prompt.prompt.clone(),
                floor_tok_s: f32_mode.floor.tok_s,
                engine_decode_tok_s: prompt.decode_tok_s.as_ref().map_or(0.0, |d| d.p50),
                decode_vs_floor: prompt.decode_vs_floor,
                overhead_percent: prompt.overhead_percent,
            })
            .collect(),
        batching: Batching {
            streams: options.concurrency,
            aggregate_decode_tok_s: aggregate_decode,
            aggregate_tok_s: batching_row.tokens_per_s,
            vs_llama_cpp_decode: aggregate_decode / llama_decode,
        },
        settings: Settings {
            runs,
            warmup_runs,
            max_new_tokens,
            threads: options.threads,
            sampling: "greedy, EOS ignored, the same prompt token ids for every system",
        },
        results: rows,
        peer_runs,
    };

    let markdown = markdown(&report);
    print!("{markdown}");
    let table = out.join("compare.md");
    std::fs::write(&table, &markdown)
        .with_context(|| format!("cannot write {}", table.display()))?;
    let json = match &options.json {
        Some(path) => path.clone(),
        None => out.join("compare.json"),
    };
    write_atomically(&json, &serde_json::to_string_pretty(&report)?)?;
    let svg = out.join("compare.svg");
    plot(&report, &svg)?;
    eprintln!(
        "table: {}\nreport: {}\nplot: {}",
        table.display(),
        json.display(),
        svg.display()
    );
    Ok(())
}

fn read_engine_report(path: &Path) -> Result<EngineReport> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let report: EngineReport = serde_json::from_str(&text)
        .with_context(|| format!("{} is not the engine's report", path.display()))?;
    if report.schema_version != 1 {
        bail!(
            "{} has schema version {}; `cargo xtask bench --compare` reads version 1",
            path.display(),
            report.schema_version
        );
    }
    Ok(report)
}

fn engine_mode<'a>(engine: &'a EngineReport, mode: &str) -> Result<&'a EngineMode> {
    engine
        .modes
        .iter()
        .find(|m| m.mode == mode)
        .with_context(|| format!("the engine's report has no mode {mode}"))
}

/// Every system's medians on every prompt.
fn rows(engine: &EngineReport, peer_runs: &[PeerRun]) -> Result<Vec<Row>> {
    let mut rows = Vec::new();
    for (mode, weights) in [("none", "f32"), ("mlx-4bit", "4-bit")] {
        for prompt in &engine_mode(engine, mode)?.prompts {
            rows.push(Row {
                system: OURS,
                weights,
                prompt: prompt.prompt.clone(),
                prompt_tokens: prompt.prompt_tokens,
                ttft_ms: prompt.ttft_ms.p50,
                prefill_tok_s: prompt.prefill_tok_s.p50,
                decode_tok_s: prompt.decode_tok_s.as_ref().map_or(0.0, |d| d.p50),
            });
        }
    }
    for (system, script_name, weights) in [
        (MLX_LM, "mlx-lm", "f32"),
        (MLX_LM, "mlx-lm", "4-bit"),
        (LLAMA_CPP, "llama.cpp", "Q4_1"),
    ] {
        for prompt in &engine.prompts {
            let runs: Vec<&PeerRun> = peer_runs
                .iter()
                .filter(|run| {
                    run.system == script_name && run.weights == weights && run.prompt == prompt.name
                })
                .collect();
            if runs.is_empty() {
                bail!(
                    "{system} ({weights}) reported no run of prompt {}",
                    prompt.name
                );
            }
            rows.push(Row {
                system,
                weights,
                prompt: prompt.name.clone(),
                prompt_tokens: prompt.token_ids.len(),
                ttft_ms: median(runs.iter().map(|run| run.ttft_s * 1e3)),
                prefill_tok_s: median(runs.iter().map(|run| run.prefill_tok_s)),
                decode_tok_s: median(runs.iter().filter_map(|run| run.decode_tok_s)),
            });
        }
    }
    Ok(rows)
}

/// The median (the mean of the two middle values for an even count); NaN without values.
fn median(values: impl IntoIterator<Item = f64>) -> f64 {
    let mut sorted: Vec<f64> = values.into_iter().collect();
    sorted.sort_by(f64::total_cmp);
    match sorted.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => sorted[n / 2],
        n => (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0,
    }
}

/// `a / b` of `metric` on each prompt, combined over the prompts by their geometric mean.
fn geometric_mean_ratio(
    rows: &[Row],
    a: (&str, &str),
    b: (&str, &str),
    metric: fn(&Row) -> f64,
) -> f64 {
    let find = |(system, weights): (&str, &str), prompt: &str| {
        rows.iter()
            .find(|row| row.system == system && row.weights == weights && row.prompt == prompt)
            .map(metric)
    };
    let logs: Vec<f64> = rows
        .iter()
        .filter(|row| row.system == a.0 && row.weights == a.1)
        .filter_map(|row| Some((find(a, &row.prompt)? / find(b, &row.prompt)?).ln()))
        .collect();
    (logs.iter().sum::<f64>() / logs.len() as f64).exp()
}

fn markdown(report: &Report) -> String {
    let mut text = String::new();
    let settings = &report.settings;
    let mut prompts: Vec<(&str, usize)> = Vec::new();
    for row in &report.results {
        if !prompts.iter().any(|(name, _)| *name == row.prompt) {
            prompts.push((&row.prompt, row.prompt_tokens));
        }
    }
    for (prompt, tokens) in prompts {
        let _ = writeln!(
            text,
            "Prompt `{prompt}`: {tokens} tokens, then {} greedy tokens; medians of {} runs after {} warm-up, {} threads.\n",
            settings.max_new_tokens, settings.runs, settings.warmup_runs, settings.threads
        );
        let _ = writeln!(
            text,
            "| system | weights | time to first token | prefill tok/s | decode tok/s | prefill: ours f32 / this | decode: ours f32 / this |"
        );
        let _ = writeln!(text, "|---|---|---:|---:|---:|---:|---:|");
        let rows: Vec<&Row> = report
            .results
            .iter()
            .filter(|row| row.prompt == prompt)
            .collect();
        let ours = rows
            .iter()
            .find(|row| row.system == OURS && row.weights == "f32");
        for row in &rows {
            let ratio = |metric: fn(&Row) -> f64| {
                ours.map_or_else(
                    || "-".to_string(),
                    |ours| format!("{:.2}x", metric(ours) / metric(row)),
                )
            };
            let _ = writeln!(
                text,
                "| {} | {} | {:.0} ms | {:.1} | {:.1} | {} | {} |",
                row.system,
                row.weights,
                row.ttft_ms,
                row.prefill_tok_s,
                row.decode_tok_s,
                ratio(|row| row.prefill_tok_s),
                ratio(|row| row.decode_tok_s),
            );
        }
        let _ = writeln!(text);
    }
    let _ = writeln!(text, "| measure | value | target |");
    let _ = writeln!(text, "|---|---:|---|");
    let lines = [
        (
            "decode, ours f32 / mlx-lm f32 (`decode_ratio_vs_mlx_lm`)".to_string(),
            format!("{:.2}x", report.decode_ratio_vs_mlx_lm),
            "at least 1.1x",
        ),
        (
            "prefill, ours f32 / mlx-lm f32 (`prefill_ratio_vs_mlx_lm`)".to_string(),
            format!("{:.2}x", report.prefill_ratio_vs_mlx_lm),
            "at least 1x",
        ),
        (
            "decode, ours 4-bit / mlx-lm 4-bit".to_string(),
            format!("{:.2}x", report.decode_ratio_4bit_vs_mlx_lm_4bit),
            "",
        ),
        (
            "decode, ours 4-bit / llama.cpp Q4_1, the same weights (`decode_ratio_vs_llama_cpp`)"
                .to_string(),
            format!("{:.2}x", report.decode_ratio_vs_llama_cpp),
            "",
        ),
        (
            "decode, ours f32 / llama.cpp Q4_1".to_string(),
            format!("{:.2}x", report.decode_ratio_f32_vs_llama_cpp),
            "",
        ),
    ];
    for (name, value, target) in lines {
        let _ = writeln!(text, "| {name} | {value} | {target} |");
    }
    for floor in &report.floor_f32 {
        let _ = writeln!(
            text,
            "| f32 decode / the backend's floor ({:.1} tok/s), prompt `{}` | {} | at least 0.9 |",
            floor.floor_tok_s,
            floor.prompt,
            floor
                .decode_vs_floor
                .map_or_else(|| "-".to_string(), |ratio| format!("{ratio:.2}")),
        );
        let _ = writeln!(
            text,
            "| engine overhead, % of a f32 decode step, prompt `{}` | {:.1} % | under 5 % |",
            floor.prompt, floor.overhead_percent
        );
    }
    let batching = &report.batching;
    let _ = writeln!(
        text,
        "| aggregate decode at {} streams ({:.1} tok/s) / llama.cpp single-stream decode | {:.2}x | above 1x |",
        batching.streams, batching.aggregate_decode_tok_s, batching.vs_llama_cpp_decode
    );
    text
}

fn plot(report: &Report, svg: &Path) -> Result<()> {
    let Some(first) = report.results.first() else {
        return Ok(());
    };
    let bars: Vec<CompareBar> = report
        .results
        .iter()
        .filter(|row| row.prompt == first.prompt)
        .map(|row| CompareBar {
            label: format!(
                "{} {}",
                row.system.split(' ').next().unwrap_or(row.system),
                row.weights
            ),
            prefill_tok_s: row.prefill_tok_s,
            decode_tok_s: row.decode_tok_s,
        })
        .collect();
    let title = format!(
        "SmolLM2-135M, prompt of {} tokens, {} new tokens, {} threads (medians)",
        first.prompt_tokens, report.settings.max_new_tokens, report.settings.threads
    );
    plots::plot_compare(&bars, &title, svg)
}

fn write_atomically(path: &Path, text: &str) -> Result<()> {
    let partial = path.with_extension("partial");
    std::fs::write(&partial, text)
        .and_then(|()| std::fs::rename(&partial, path))
        .with_context(|| format!("cannot write {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::{geometric_mean_ratio, median, Row};

    fn row(system: &'static str, prompt: &str, decode_tok_s: f64) -> Row {
        Row {
            system,
            weights: "f32",
            prompt: prompt.to_string(),
            prompt_tokens: 1,
            ttft_ms: 1.0,
            prefill_tok_s: 1.0,
            decode_tok_s,
        }
    }

    #[test]
    fn median_of_odd_and_even_counts() {
        assert_eq!(median([3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median([4.0, 1.0, 3.0, 2.0]), 2.5);
        assert!(median([]).is_nan());
    }

    #[test]
    fn ratios_combine_by_geometric_mean_over_prompts() {
        // a/b is 2 on one prompt and 8 on the other: the geometric mean is 4.
        let rows = [
            row("a", "p", 20.0),
            row("b", "p", 10.0),
            row("a", "q", 80.0),
            row("b", "q", 10.0),
        ];
        let ratio = geometric_mean_ratio(&rows, ("a", "f32"), ("b", "f32"), |r| r.decode_tok_s);
        assert!((ratio - 4.0).abs() < 1e-12, "{ratio}");
    }
}
