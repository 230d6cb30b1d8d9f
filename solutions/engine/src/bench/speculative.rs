//! `bench speculative`: what chapter 14 buys. Greedy decode tokens/s of the same prompts plainly
//! (chapter 8's cache, one token per forward pass) and speculatively with each drafter (prompt
//! lookup, and the draft model when one is given), side by side in one run, with the acceptance
//! rate and the tokens each target step yields. Greedy speculation must give the same tokens: the
//! table says whether it did.

use crate::{prompts, KERNEL};
use anyhow::{Context, Result};
use decode::{generate, greedy, GenerationOptions, Tokenizer};
use kv_cache::{CachedModel, Model};
use quantized_matmul::{load_model, Quantization};
use sampling::SamplingParams;
use serde::Serialize;
use speculative_decoding::{
    speculative_generate, Drafter, ModelDrafter, NgramDrafter, SpeculativeOptions,
};
use std::{
    path::PathBuf,
    time::{Duration, Instant},
};

#[derive(clap::Args)]
pub struct SpeculativeArgs {
    /// The target model directory.
    #[arg(long, value_name = "DIR")]
    model_path: PathBuf,
    /// A draft model sharing the target's tokenizer (`cargo xtask bench speculative` passes the
    /// built-in model's 4-bit conversion); without it only prompt lookup drafts.
    #[arg(long, value_name = "DIR")]
    draft_model_path: Option<PathBuf>,
    /// Tokens each run generates (greedy, EOS ignored).
    #[arg(long, default_value_t = 48)]
    max_new_tokens: usize,
    /// Draft lengths to measure.
    #[arg(long, value_delimiter = ',', default_values_t = [4])]
    num_draft_tokens: Vec<usize>,
    /// Built-in prompts: short-chat, medium, long, and code (a repetitive test file to
    /// continue, where prompt lookup shines).
    #[arg(long, value_delimiter = ',', default_values_t = ["short-chat".to_string(), "medium".to_string(), "code".to_string()])]
    prompts: Vec<String>,
    /// Also write the rows as JSON here.
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
}

#[derive(Serialize)]
struct Row {
    prompt: String,
    prompt_tokens: usize,
    drafter: String,
    num_draft_tokens: usize,
    decode_tokens_per_s: f64,
    speedup: f64,
    acceptance_rate: Option<f64>,
    tokens_per_target_step: Option<f64>,
    same_tokens: bool,
}

/// Decode time (after the first token) and the tokens of one greedy run.
struct Run {
    decode: Duration,
    tokens: Vec<u32>,
    acceptance_rate: Option<f64>,
    tokens_per_step: Option<f64>,
}

impl Run {
    fn tokens_per_s(&self) -> f64 {
        (self.tokens.len().saturating_sub(1)) as f64 / self.decode.as_secs_f64()
    }
}

fn plain(model: &Model, tokenizer: &Tokenizer, prompt: &[u32], count: usize) -> Result<Run> {
    let mut first = None;
    let mut last = Instant::now();
    let generation = generate(
        &mut CachedModel::new(model),
        tokenizer,
        prompt,
        &options(count),
        &mut |logits, tokens| {
            let token = greedy(logits, tokens)?;
            last = Instant::now();
            first.get_or_insert(last);
            Ok(token)
        },
        &mut |_| {},
    )?;
    Ok(Run {
        decode: first.map_or(Duration::ZERO, |first| last - first),
        tokens: generation.tokens,
        acceptance_rate: None,
        tokens_per_step: None,
    })
}

fn speculative(
    model: &Model,
    drafter: &mut dyn Drafter,
    tokenizer: &Tokenizer,
    prompt: &[u32],
    count: usize,
    k: usize,
) -> Result<Run> {
    let options = SpeculativeOptions {
        generation: options(count),
        sampling: SamplingParams::default(),
        num_draft_tokens: k,
    };
    let result = speculative_generate(model, drafter, tokenizer, prompt, &options, &mut |_| {})?;
    Ok(Run {
        decode: result.stats.decode_time(),
        tokens: result.generation.tokens,
        acceptance_rate: result.stats.acceptance_rate(),
        tokens_per_step: result.stats.tokens_per_step(),
    })
}

fn options(count: usize) -> GenerationOptions {
    GenerationOptions {
        max_new_tokens: count,
        stop_strings: Vec::new(),
        ignore_eos: true,
    }
}

pub fn run(args: SpeculativeArgs) -> Result<()> {
    let load = |dir: &PathBuf| {
        load_model(dir, Quantization::None, 32, KERNEL)
            .with_context(|| format!("cannot load the model in {}", dir.display()))
    };
    let target = load(&args.model_path)?;
    let draft_model = args.draft_model_path.as_ref().map(load).transpose()?;
    let tokenizer = Tokenizer::load(&args.model_path)?;
    let mut specs = Vec::new();
    for name in &args.prompts {
        specs.push(match name.as_str() {
            // Plain text, not a chat turn: the model continues the pattern, as an editor's
            // completion would, and the continuation repeats what came before.
            "code" => prompts::PromptSpec {
                name: name.clone(),
                text: include_str!("prompts/code.txt").to_string(),
                chat: false,
            },
            _ => prompts::builtin_named(std::slice::from_ref(name))?.remove(0),
        });
    }
    let prompts = prompts::tokenize(&specs, &tokenizer)?;
    let count = args.max_new_tokens;

    // Untimed: the first runs allocate and, on a GPU, compile kernels for each shape.
    eprintln!("warm-up");
    let warm = &prompts[0].token_ids;
    plain(&target, &tokenizer, warm, 4)?;
    speculative(
        &target,
        &mut NgramDrafter::default(),
        &tokenizer,
        warm,
        8,
        4,
    )?;
    if let Some(draft) = &draft_model {
        let mut drafter =
            ModelDrafter::new(draft, target.config().vocab_size, SamplingParams::default())?;
        speculative(&target, &mut drafter, &tokenizer, warm, 8, 4)?;
    }

    let mut rows = Vec::new();
    for prompt in &prompts {
        let ids = &prompt.token_ids;
        eprintln!(
            "{}: {} prompt tokens, {count} new, plain",
            prompt.name,
            ids.len()
        );
        let baseline = plain(&target, &tokenizer, ids, count)?;
        let row = |drafter: &str, k: usize, run: &Run| Row {
            prompt: prompt.name.clone(),
            prompt_tokens: ids.len(),
            drafter: drafter.to_string(),
            num_draft_tokens: k,
            decode_tokens_per_s: run.tokens_per_s(),
            speedup: run.tokens_per_s() / baseline.tokens_per_s(),
            acceptance_rate: run.acceptance_rate,
            tokens_per_target_step: run.tokens_per_step,
            same_tokens: run.tokens == baseline.tokens,
        };
        rows.push(row("none", 0, &baseline));
        for &k in &args.num_draft_tokens {
            eprintln!("{}: ngram, k = {k}", prompt.name);
            let run = speculative(
                &target,
                &mut NgramDrafter::default(),
                &tokenizer,
                ids,
                count,
                k,
            )?;
            rows.push(row("ngram", k, &run));
            if let Some(draft) = &draft_model {
                eprintln!("{}: draft model, k = {k}", prompt.name);
                let mut drafter = ModelDrafter::new(
                    draft,
                    target.config().vocab_size,
                    SamplingParams::default(),
                )?;
                let run = speculative(&target, &mut drafter, &tokenizer, ids, count, k)?;
                rows.push(row("draft model", k, &run));
            }
        }
    }

    println!("| prompt | prompt tokens | drafter | k | decode tok/s | speedup | acceptance | tokens / target step | same tokens |");
    println!("|---|---:|---|---:|---:|---:|---:|---:|---|");
    let percent =
        |rate: Option<f64>| rate.map_or("-".into(), |rate| format!("{:.0}%", rate * 100.0));
    let per_step = |value: Option<f64>| value.map_or("1.00".into(), |value| format!("{value:.2}"));
    for row in &rows {
        println!(
            "| {} | {} | {} | {} | {:.1} | {:.2}x | {} | {} | {} |",
            row.prompt,
            row.prompt_tokens,
            row.drafter,
            row.num_draft_tokens,
            row.decode_tokens_per_s,
            row.speedup,
            percent(row.acceptance_rate),
            per_step(row.tokens_per_target_step),
            if row.same_tokens { "yes" } else { "NO" }
        );
    }
    if let Some(path) = &args.json {
        crate::write_atomically(path, &serde_json::to_string_pretty(&rows)?)?;
    }
    Ok(())
}
