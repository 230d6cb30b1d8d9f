//! `--draft-model DIR` and `--speculative ngram`: generation with chapter 14's speculative
//! decoding, and the figures it adds to `--show-stats` and `--json`.

use crate::{stats::Timings, KERNEL};
use anyhow::{bail, Context, Result};
use decode::{Generation, GenerationOptions, StopReason, Tokenizer};
use kv_cache::{KvCache, Model};
use quantized_matmul::{load_model, Quantization};
use sampling::SamplingParams;
use serde::Serialize;
use speculative_decoding::{
    speculative_generate, Drafter, ModelDrafter, NgramDrafter, SpeculativeOptions,
};
use std::{path::PathBuf, time::Instant};

/// Where the draft tokens come from.
#[derive(Clone, Debug)]
pub enum Drafting {
    /// Prompt lookup: no second model.
    Ngram,
    /// A small model sharing the target's tokenizer (float or MLX-quantized).
    Model(PathBuf),
}

/// What `--speculative` accepts: `ngram` (a draft model is chosen with `--draft-model DIR`).
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum SpeculativeKind {
    Ngram,
}

/// The drafting the flags ask for, or `None` without speculation.
pub fn drafting(
    speculative: Option<SpeculativeKind>,
    draft_model: Option<PathBuf>,
    num_draft_tokens: Option<usize>,
) -> Result<Option<(Drafting, usize)>> {
    let drafting = match (speculative, draft_model) {
        (Some(_), Some(_)) => {
            bail!("--speculative ngram and --draft-model are two drafters: choose one")
        }
        (Some(SpeculativeKind::Ngram), None) => Drafting::Ngram,
        (None, Some(dir)) => {
            if !dir.join("config.json").is_file() {
                bail!("no draft model in {} (no config.json)", dir.display());
            }
            Drafting::Model(dir)
        }
        (None, None) if num_draft_tokens.is_some() => {
            bail!("--num-draft-tokens needs a drafter: --draft-model DIR or --speculative ngram")
        }
        (None, None) => return Ok(None),
    };
    let k = num_draft_tokens.unwrap_or(DEFAULT_DRAFT_TOKENS);
    if k == 0 {
        bail!("--num-draft-tokens must be at least 1");
    }
    Ok(Some((drafting, k)))
}

/// Tokens drafted per target step unless `--num-draft-tokens` says otherwise.
pub const DEFAULT_DRAFT_TOKENS: usize = 4;

/// The speculation figures of `--show-stats` and `--json` (key `speculative`).
#[derive(Serialize)]
pub struct SpeculationReport {
    /// `ngram`, or the draft model's directory.
    pub drafter: String,
    pub num_draft_tokens: usize,
    /// Target forward passes after the prefill.
    pub target_steps: usize,
    pub drafted_tokens: usize,
    pub accepted_tokens: usize,
    /// Accepted over drafted tokens.
    pub acceptance_rate: Option<f64>,
    /// Tokens per target forward pass after the prefill: 1 without speculation.
    pub tokens_per_target_step: Option<f64>,
}

/// What a speculative generation gives the engine's report.
pub struct Speculated {
    pub generation: Generation,
    pub timings: Timings,
    pub cache: Vec<KvCache>,
    pub report: SpeculationReport,
}

/// Generates after `prompt` with `target`, the drafter of `drafting` proposing `k` tokens a
/// step.
#[allow(clippy::too_many_arguments)]
pub fn generate(
    target: &Model,
    (drafting, k): &(Drafting, usize),
    tokenizer: &Tokenizer,
    prompt: &[u32],
    generation: GenerationOptions,
    sampling: SamplingParams,
    on_text: &mut dyn FnMut(&str),
) -> Result<Speculated> {
    let draft_model = match drafting {
        Drafting::Model(dir) => Some(
            load_model(dir, Quantization::None, 32, KERNEL)
                .with_context(|| format!("cannot load the draft model in {}", dir.display()))?,
        ),
        Drafting::Ngram => None,
    };
    let mut drafter: Box<dyn Drafter> = match &draft_model {
        Some(model) => Box::new(ModelDrafter::new(
            model,
            target.config().vocab_size,
            sampling,
        )?),
        None => Box::new(NgramDrafter::default()),
    };
    let options = SpeculativeOptions {
        generation,
        sampling,
        num_draft_tokens: *k,
    };
    let started = Instant::now();
    let result = speculative_generate(
        target,
        drafter.as_mut(),
        tokenizer,
        prompt,
        &options,
        on_text,
    )?;
    let stats = &result.stats;
    // As the plain loop's timer counts: every chosen token, an EOS that ended generation too.
    let chosen = result.generation.tokens.len()
        + usize::from(result.generation.stop_reason == StopReason::Eos);
    let timings = Timings {
        time_to_first_token: stats.time_to_first_token(),
        decode: stats.decode_time(),
        chosen,
        total: started.elapsed(),
    };
    let report = SpeculationReport {
        drafter: match drafting {
            Drafting::Ngram => "ngram".into(),
            Drafting::Model(dir) => dir.display().to_string(),
        },
        num_draft_tokens: *k,
        target_steps: stats.target_steps,
        drafted_tokens: stats.drafted,
        accepted_tokens: stats.accepted,
        acceptance_rate: stats.acceptance_rate(),
        tokens_per_target_step: stats.tokens_per_step(),
    };
    Ok(Speculated {
        generation: result.generation,
        timings,
        cache: result.cache,
        report,
    })
}
