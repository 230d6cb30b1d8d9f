//! `bench speculative`: what chapter 14 buys. Greedy decode tokens/s of the same prompts plainly
//! (chapter 8's cache, one token per forward pass) and speculatively with each drafter (prompt
//! lookup, and the draft model when one is given), side by side in one run, with the acceptance
//! rate and the tokens each target step yields; then the same drafters for a batch of requests
//! decoding together through chapter 13's paged scheduler. Greedy speculation must give the same
//! tokens: the table says whether it did.

use crate::{prompts, KERNEL};
use anyhow::{bail, Context, Result};
use continuous_batching::{Batcher, Event, Request, SchedulerConfig};
use decode::{generate, greedy, GenerationOptions, Tokenizer};
use kv_cache::{CachedModel, Model};
use paged_kv_cache::blocks_for;
use prefix_cache::{PagedConfig, PagedScheduler};
use quantized_matmul::{load_model, Quantization};
use sampling::SamplingParams;
use serde::Serialize;
use speculative_decoding::{
    speculative_generate, BatchDrafting, BatchSpeculator, Drafter, ModelDrafter, NgramDrafter,
    SpeculativeOptions,
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
    /// Requests decoding together in the batched runs (the prompts in turn); 0 skips them.
    #[arg(long, default_value_t = 4)]
    batch: usize,
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

impl Row {
    /// `run` of `drafter` with `k` draft tokens, beside the plain `baseline` of the same prompt.
    fn new(
        prompt: &str,
        prompt_tokens: usize,
        (drafter, k): (&str, usize),
        run: &Run,
        baseline: &Run,
    ) -> Row {
        Row {
            prompt: prompt.to_string(),
            prompt_tokens,
            drafter: drafter.to_string(),
            num_draft_tokens: k,
            decode_tokens_per_s: run.tokens_per_s(),
            speedup: run.tokens_per_s() / baseline.tokens_per_s(),
            acceptance_rate: run.acceptance_rate,
            tokens_per_target_step: run.tokens_per_step,
            same_tokens: run.tokens == baseline.tokens,
        }
    }
}

/// Decode time (after the first token) and the tokens of one greedy run.
struct Run {
    decode: Duration,
    /// The tokens generated in that time.
    decoded: usize,
    tokens: Vec<u32>,
    acceptance_rate: Option<f64>,
    tokens_per_step: Option<f64>,
}

impl Run {
    fn tokens_per_s(&self) -> f64 {
        self.decoded as f64 / self.decode.as_secs_f64()
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
        decoded: generation.tokens.len().saturating_sub(1),
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
        decoded: result.generation.tokens.len().saturating_sub(1),
        tokens: result.generation.tokens,
        acceptance_rate: result.stats.acceptance_rate(),
        tokens_per_step: result.stats.tokens_per_step(),
    })
}

/// `prompts` decoding together through chapter 13's paged scheduler, greedy, with `drafting`
/// (none: one token per row per step). As in the server, a request ends at its EOS (the
/// scheduler cannot mask it), so rows leave at different steps. Timed from the step in which
/// every request has its first token to the last: the batch's decode tokens/s.
fn batched(
    model: &Model,
    drafting: Option<BatchDrafting>,
    prompts: &[&[u32]],
    count: usize,
    k: usize,
) -> Result<Run> {
    let tokens_total: usize = prompts.iter().map(|prompt| prompt.len() + count).sum();
    let config = PagedConfig {
        scheduler: SchedulerConfig {
            max_running: prompts.len(),
            ..SchedulerConfig::default()
        },
        // Room for every request and its drafts: the pool is not what is measured.
        num_blocks: blocks_for(tokens_total) + prompts.len() * (blocks_for(k + 1) + 1),
        prefix_caching: false,
    };
    let mut scheduler = PagedScheduler::new(model, config)?;
    if let Some(drafting) = drafting {
        let speculator = BatchSpeculator::new(drafting, k, model.config().vocab_size)?;
        scheduler = scheduler.with_speculator(Box::new(speculator));
    }
    for (id, prompt) in prompts.iter().enumerate() {
        Batcher::add(
            &mut scheduler,
            Request {
                id: id as u64,
                prompt: prompt.to_vec(),
                max_new_tokens: count,
                sampling: SamplingParams::default(),
                stop_token_ids: model.config().eos_token_ids.clone(),
                constraint: None,
                logprobs: None,
            },
        )?;
    }
    let mut tokens = vec![Vec::new(); prompts.len()];
    let mut decoding_since: Option<(Instant, usize)> = None;
    while !Batcher::is_idle(&scheduler) {
        for event in Batcher::step(&mut scheduler)? {
            if let Event::Token { id, token, .. } = event {
                tokens[id as usize].push(token);
            }
        }
        if decoding_since.is_none() && tokens.iter().all(|tokens| !tokens.is_empty()) {
            decoding_since = Some((Instant::now(), tokens.iter().map(Vec::len).sum()));
        }
    }
    let Some((started, first_tokens)) = decoding_since else {
        bail!("the batch produced no tokens");
    };
    let counts = Batcher::speculation(&scheduler).unwrap_or_default();
    let tokens = tokens.concat();
    Ok(Run {
        decode: started.elapsed(),
        decoded: tokens.len() - first_tokens,
        tokens,
        acceptance_rate: counts.acceptance_rate(),
        tokens_per_step: counts.tokens_per_row_step(),
    })
}

fn options(count: usize) -> GenerationOptions {
    GenerationOptions {
        max_new_tokens: count,
        stop_strings: Vec::new(),
        ignore_eos: true,
    }
}

/// The batched runs' rows: `args.batch` requests (the prompts in turn) plain, then with each
/// drafter and draft length.
fn batched_rows(
    args: &SpeculativeArgs,
    target: &Model,
    draft_model: Option<&Model>,
    prompts: &[prompts::Prompt],
) -> Result<Vec<Row>> {
    let batch: Vec<&[u32]> = prompts
        .iter()
        .cycle()
        .take(args.batch)
        .map(|prompt| prompt.token_ids.as_slice())
        .collect();
    let name = format!("batch of {}", args.batch);
    let prompt_tokens = batch.iter().map(|prompt| prompt.len()).sum();
    let count = args.max_new_tokens;
    eprintln!("{name}: {prompt_tokens} prompt tokens, {count} new each, plain");
    let baseline = batched(target, None, &batch, count, 0)?;
    let row = |drafter: &str, k: usize, run: &Run| {
        Row::new(&name, prompt_tokens, (drafter, k), run, &baseline)
    };
    let mut rows = vec![row("none", 0, &baseline)];
    for &k in &args.num_draft_tokens {
        let mut drafters = vec![("ngram", BatchDrafting::Ngram(NgramDrafter::default()))];
        drafters.extend(draft_model.map(|model| ("draft model", BatchDrafting::Model(model))));
        for (drafter, drafting) in drafters {
            eprintln!("{name}: {drafter}, k = {k}");
            let run = batched(target, Some(drafting), &batch, count, k)?;
            rows.push(row(drafter, k, &run));
        }
    }
    Ok(rows)
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
        let row = |drafter: &str, k: usize, run: &Run| {
            Row::new(&prompt.name, ids.len(), (drafter, k), run, &baseline)
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

    if args.batch > 0 {
        rows.extend(batched_rows(
            &args,
            &target,
            draft_model.as_ref(),
            &prompts,
        )?);
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
