//! What speculative generation takes and returns: its options, the verdict of one verification,
//! and the counts behind the acceptance rate. Given.

use decode::{Generation, GenerationOptions};
use kv_cache::KvCache;
use sampling::SamplingParams;
use std::time::{Duration, Instant};

/// How [`speculative_generate`](crate::speculative_generate) runs.
#[derive(Debug, Clone)]
pub struct SpeculativeOptions {
    /// As for chapter 6's `generate`: the token limit, stop strings, `ignore_eos`.
    pub generation: GenerationOptions,
    /// As for chapter 7's sampler; temperature 0 is greedy. The seed drives this generation's
    /// own random draws: the text follows the sampler's distribution, not its exact draws.
    pub sampling: SamplingParams,
    /// `k`: the most tokens a drafter proposes per target step.
    pub num_draft_tokens: usize,
}

/// What the target made of a draft of `k` tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verdict {
    /// How many draft tokens, from the first, are kept (0 to `k`).
    pub accepted: usize,
    /// The token after them: the target's correction of the first rejected draft token, or,
    /// when all `k` are accepted, a bonus token from the last row.
    pub next: u32,
}

/// What [`speculative_generate`](crate::speculative_generate) produced.
pub struct SpeculativeGeneration {
    pub generation: Generation,
    pub stats: SpeculationStats,
    /// The target's cache at the end, one [`KvCache`] per layer (the engine reports its memory).
    pub cache: Vec<KvCache>,
}

/// Counts and times of a speculative generation. The first target step is the prefill: it
/// verifies no draft and is not counted in the rates.
#[derive(Debug, Clone)]
pub struct SpeculationStats {
    started: Instant,
    /// When the first step (the prefill) had its token.
    first_token: Option<Duration>,
    last_step: Duration,
    /// Target forward passes after the prefill.
    pub target_steps: usize,
    /// Draft tokens proposed and accepted over those steps.
    pub drafted: usize,
    pub accepted: usize,
}

impl SpeculationStats {
    /// Starts the clock.
    pub fn start() -> Self {
        SpeculationStats {
            started: Instant::now(),
            first_token: None,
            last_step: Duration::ZERO,
            target_steps: 0,
            drafted: 0,
            accepted: 0,
        }
    }

    /// Call once per target step, after verifying a draft of `drafted` tokens of which
    /// `accepted` were kept (the step yields `accepted + 1` tokens). The first call is the
    /// prefill's.
    pub fn record_step(&mut self, drafted: usize, accepted: usize) {
        let now = self.started.elapsed();
        self.last_step = now;
        if self.first_token.is_none() {
            self.first_token = Some(now);
            return;
        }
        self.target_steps += 1;
        self.drafted += drafted;
        self.accepted += accepted;
    }

    /// Accepted draft tokens over proposed ones; `None` before any was proposed.
    pub fn acceptance_rate(&self) -> Option<f64> {
        (self.drafted > 0).then(|| self.accepted as f64 / self.drafted as f64)
    }

    /// Tokens each target step yields after the prefill: 1 without speculation, up to `k + 1`.
    pub fn tokens_per_step(&self) -> Option<f64> {
        (self.target_steps > 0)
            .then(|| (self.target_steps + self.accepted) as f64 / self.target_steps as f64)
    }

    /// From the start to the prefill's token.
    pub fn time_to_first_token(&self) -> Option<Duration> {
        self.first_token
    }

    /// From the prefill's token to the last step's.
    pub fn decode_time(&self) -> Duration {
        self.last_step - self.first_token.unwrap_or_default()
    }

    /// Tokens the decode steps yielded (after the prefill's).
    pub fn decode_tokens(&self) -> usize {
        self.target_steps + self.accepted
    }
}
