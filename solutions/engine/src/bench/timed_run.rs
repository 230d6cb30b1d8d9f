//! One greedy generation through the engine's own path (the cached model, chapter 6's `generate`,
//! chapter 7's sampler), with every step split into the time spent building MLX's lazy graph,
//! evaluating it, sampling, and the rest (detokenizing, EOS masking, the loop itself).

use anyhow::Result;
use decode::{generate, DecodeError, GenerationOptions, LanguageModel, ModelConfig, Tokenizer};
use kv_cache::{CachedModel, Model};
use mlx_rs::{transforms::eval, Array};
use sampling::{Sampler, SamplingParams};
use serde::Serialize;
use std::{
    cell::Cell,
    time::{Duration, Instant},
};

/// Seconds summed over the decode steps of a run (the prefill step left out).
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct StepTimes {
    pub steps: usize,
    /// Building the lazy graph: `next_token_logits` returns before anything is computed.
    pub graph_build_s: f64,
    /// `eval` of the logits: the time MLX computes.
    pub mlx_eval_s: f64,
    /// The sampler, on logits already evaluated (greedy: an argmax and reading one integer).
    pub sampling_s: f64,
    /// The rest of each step: detokenizing, EOS masking, the decode loop.
    pub other_s: f64,
}

impl StepTimes {
    pub fn step_s(&self) -> f64 {
        self.graph_build_s + self.mlx_eval_s + self.sampling_s + self.other_s
    }

    /// Everything outside MLX's evaluation, as a share of a step.
    pub fn overhead_fraction(&self) -> f64 {
        1.0 - self.mlx_eval_s / self.step_s()
    }

    pub fn add(&mut self, other: &StepTimes) {
        self.steps += other.steps;
        self.graph_build_s += other.graph_build_s;
        self.mlx_eval_s += other.mlx_eval_s;
        self.sampling_s += other.sampling_s;
        self.other_s += other.other_s;
    }
}

/// What one run measured.
#[derive(Clone, Debug, Serialize)]
pub struct RunTimes {
    pub prompt_tokens: usize,
    pub generated_tokens: usize,
    /// From the call to `generate` to the first token chosen: the prefill.
    pub ttft_s: f64,
    pub prefill_tok_s: f64,
    /// Tokens after the first, over the time from the first to the last.
    pub decode_tok_s: Option<f64>,
    /// Bytes the KV cache holds allocated at the end (its capacity, not only the used part).
    pub kv_cache_bytes: usize,
    pub decode_steps: StepTimes,
}

/// A [`CachedModel`] that records how long building each step's graph took.
struct GraphTimed<'m, 't> {
    model: CachedModel<'m>,
    last_build: &'t Cell<Duration>,
}

impl LanguageModel for GraphTimed<'_, '_> {
    fn config(&self) -> &ModelConfig {
        self.model.config()
    }

    fn next_token_logits(&mut self, sequence: &[u32]) -> Result<Array, DecodeError> {
        let started = Instant::now();
        let logits = self.model.next_token_logits(sequence);
        self.last_build.set(started.elapsed());
        logits
    }
}

/// Generates exactly `max_new_tokens` greedy tokens after `prompt` (EOS ignored), timing each
/// step.
pub fn timed_generation(
    model: &Model,
    tokenizer: &Tokenizer,
    prompt: &[u32],
    max_new_tokens: usize,
) -> Result<RunTimes> {
    let mut sampler = Sampler::new(SamplingParams::default())?;
    let options = GenerationOptions {
        max_new_tokens,
        stop_strings: Vec::new(),
        ignore_eos: true,
    };
    let last_build = Cell::new(Duration::ZERO);
    let mut timed = GraphTimed {
        model: CachedModel::new(model),
        last_build: &last_build,
    };
    let started = Instant::now();
    let mut first_token: Option<Instant> = None;
    let mut last_token = started;
    let mut decode = StepTimes::default();
    let generation = generate(
        &mut timed,
        tokenizer,
        prompt,
        &options,
        &mut |logits, tokens| {
            let entered = Instant::now();
            eval([logits])?;
            let evaluated = Instant::now();
            let token = sampler.sample(logits, tokens)?;
            let chosen = Instant::now();
            if first_token.is_some() {
                let step = (chosen - last_token).as_secs_f64();
                let build = last_build.get().as_secs_f64();
                let mlx = (evaluated - entered).as_secs_f64();
                let sampling = (chosen - evaluated).as_secs_f64();
                decode.add(&StepTimes {
                    steps: 1,
                    graph_build_s: build,
                    mlx_eval_s: mlx,
                    sampling_s: sampling,
                    other_s: (step - build - mlx - sampling).max(0.0),
                });
            }
            first_token.get_or_insert(chosen);
            last_token = chosen;
            Ok(token)
        },
        &mut |_| {},
    )?;
    let first = first_token.unwrap_or(last_token);
    let ttft_s = (first - started).as_secs_f64();
    let generated_tokens = generation.tokens.len();
    let kv_cache_bytes = timed.model.cache().iter().map(|layer| layer.nbytes()).sum();
    Ok(RunTimes {
        prompt_tokens: prompt.len(),
        generated_tokens,
        ttft_s,
        prefill_tok_s: prompt.len() as f64 / ttft_s,
        decode_tok_s: (generated_tokens > 1)
            .then(|| (generated_tokens - 1) as f64 / (last_token - first).as_secs_f64()),
        kv_cache_bytes,
        decode_steps: decode,
    })
}
