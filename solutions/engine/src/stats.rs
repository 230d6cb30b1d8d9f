//! Measuring a generation, and the report of `--show-stats` (`--json` prints
//! [`GenerationStats`] as it is).

use crate::speculate::SpeculationReport;
use serving::GenerationStats;
use std::time::{Duration, Instant};

/// Times a generation as it runs. "Prefill" is the first step (the whole prompt through the
/// model), "decode" the steps after it (one token each, against the KV cache).
pub struct Timer {
    started: Instant,
    first_token: Option<Duration>,
    last_token: Duration,
    /// Tokens chosen, an EOS that ended generation included.
    chosen: usize,
}

/// What [`Timer`] measured.
pub struct Timings {
    pub time_to_first_token: Option<Duration>,
    /// From the first token to the last.
    pub decode: Duration,
    pub chosen: usize,
    pub total: Duration,
}

impl Timer {
    pub fn start() -> Self {
        Timer {
            started: Instant::now(),
            first_token: None,
            last_token: Duration::ZERO,
            chosen: 0,
        }
    }

    /// Call once a token has been chosen: MLX is lazy, so choosing one is when the model runs.
    pub fn token_chosen(&mut self) {
        let now = self.started.elapsed();
        self.first_token.get_or_insert(now);
        self.last_token = now;
        self.chosen += 1;
    }

    pub fn finish(&self) -> Timings {
        Timings {
            time_to_first_token: self.first_token,
            decode: self.last_token - self.first_token.unwrap_or_default(),
            chosen: self.chosen,
            total: self.started.elapsed(),
        }
    }
}

/// The speeds of `timings` for a prompt of `prompt_tokens`: `(ttft ms, prefill, decode)`.
pub fn speeds(timings: &Timings, prompt_tokens: usize) -> (Option<f64>, Option<f64>, Option<f64>) {
    let first = timings.time_to_first_token.map(|first| first.as_secs_f64());
    let decode = (timings.chosen > 1 && !timings.decode.is_zero())
        .then(|| (timings.chosen - 1) as f64 / timings.decode.as_secs_f64());
    (
        first.map(|first| first * 1e3),
        first.map(|first| prompt_tokens as f64 / first),
        decode,
    )
}

/// The report of `--show-stats`, one line per figure.
pub fn report(stats: &GenerationStats) -> String {
    let stop = match stats.stop_reason {
        "eos" => "end of sequence",
        "max_tokens" => "max new tokens",
        "stop_string" => "stop string",
        _ => "context full",
    };
    let megabytes = |bytes: usize| bytes as f64 / 1e6;
    let mut lines = vec![
        format!(
            "prompt tokens:       {}{}",
            stats.prompt_tokens,
            match stats.prompt_tokens_dropped {
                0 => String::new(),
                dropped => format!(" ({dropped} dropped by {})", stats.context_policy),
            }
        ),
        format!("generated tokens:    {}", stats.generated_tokens),
        format!("stop reason:         {stop}"),
    ];
    if let Some(first) = stats.time_to_first_token_ms {
        lines.push(format!("time to first token: {first:.1} ms"));
    }
    if let Some(prefill) = stats.prefill_tokens_per_s {
        lines.push(format!("prefill:             {prefill:.1} tok/s"));
    }
    if let Some(decode) = stats.decode_tokens_per_s {
        lines.push(format!("decode:              {decode:.1} tok/s"));
    }
    lines.push(format!(
        "total time:          {:.1} ms",
        stats.total_time_ms
    ));
    lines.push(format!(
        "context:             {} of {} tokens used, {} left ({})",
        stats.max_seq_len - stats.tokens_left,
        stats.max_seq_len,
        stats.tokens_left,
        stats.context_policy
    ));
    lines.push(format!(
        "KV cache:            {:.1} MB allocated, {:.1} MB in use",
        megabytes(stats.kv_cache_allocated_bytes),
        megabytes(stats.kv_cache_active_bytes)
    ));
    let quantization = match stats.quant_group_size {
        Some(group) => format!("{}, groups of {group}", stats.quantization),
        None => stats.quantization.clone(),
    };
    lines.push(format!("quantization:        {quantization}"));
    lines.push(format!(
        "linear weights:      {:.1} MB in memory ({:.1} MB at float32)",
        megabytes(stats.linear_weight_bytes),
        megabytes(stats.linear_weight_bytes_float32)
    ));
    lines.push(format!(
        "peak memory:         {:.1} MB (MLX)",
        megabytes(stats.peak_memory_bytes)
    ));
    lines.join("\n")
}

/// The speculation lines of `--show-stats`.
pub fn speculation_report(report: &SpeculationReport) -> String {
    let mut lines = vec![format!(
        "speculative:         {} drafting, {} tokens a step",
        report.drafter, report.num_draft_tokens
    )];
    if let Some(rate) = report.acceptance_rate {
        lines.push(format!(
            "acceptance rate:     {:.1}% ({} of {} draft tokens)",
            rate * 100.0,
            report.accepted_tokens,
            report.drafted_tokens
        ));
    }
    if let Some(per_step) = report.tokens_per_target_step {
        lines.push(format!(
            "tokens per step:     {per_step:.2} ({} target steps after the prefill)",
            report.target_steps
        ));
    }
    lines.join("\n")
}
