//! Measuring a generation: its tokens, speeds, context budget and memory, printed for people
//! (`--show-stats`) or as JSON (`--json`).

use serde::Serialize;
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

/// Everything `--show-stats` and `--json` report about one generation. Sizes are bytes, times
/// milliseconds, speeds tokens per second.
#[derive(Clone, Debug, Serialize)]
pub struct GenerationStats {
    /// Prompt tokens the model read (after the context policy).
    pub prompt_tokens: usize,
    /// Prompt tokens the context policy dropped.
    pub prompt_tokens_dropped: usize,
    pub generated_tokens: usize,
    /// `eos`, `max_tokens`, `stop_string` or `context_length`.
    pub stop_reason: &'static str,
    pub time_to_first_token_ms: Option<f64>,
    pub prefill_tokens_per_s: Option<f64>,
    /// `None` below two chosen tokens.
    pub decode_tokens_per_s: Option<f64>,
    pub total_time_ms: f64,
    /// The context budget: prompt and generated tokens of one sequence.
    pub max_seq_len: usize,
    pub context_policy: String,
    /// Room left in the context after this generation.
    pub tokens_left: usize,
    /// The cache's storage, grown in steps.
    pub kv_cache_allocated_bytes: usize,
    /// The part of it holding this sequence's keys and values.
    pub kv_cache_active_bytes: usize,
    /// `none`, `int4` or `int8`: at load or as stored.
    pub quantization: String,
    pub quant_group_size: Option<i32>,
    /// The linear layers (embedding and output included) as they are in memory.
    pub linear_weight_bytes: usize,
    /// The same at float32.
    pub linear_weight_bytes_float32: usize,
    /// MLX's peak memory since the program started.
    pub peak_memory_bytes: usize,
}

impl GenerationStats {
    /// The speeds of `timings` for a prompt of `prompt_tokens`: `(ttft ms, prefill, decode)`.
    pub fn speeds(
        timings: &Timings,
        prompt_tokens: usize,
    ) -> (Option<f64>, Option<f64>, Option<f64>) {
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
    pub fn report(&self) -> String {
        let stop = match self.stop_reason {
            "eos" => "end of sequence",
            "max_tokens" => "max new tokens",
            "stop_string" => "stop string",
            _ => "context full",
        };
        let megabytes = |bytes: usize| bytes as f64 / 1e6;
        let mut lines = vec![
            format!(
                "prompt tokens:       {}{}",
                self.prompt_tokens,
                match self.prompt_tokens_dropped {
                    0 => String::new(),
                    dropped => format!(" ({dropped} dropped by {})", self.context_policy),
                }
            ),
            format!("generated tokens:    {}", self.generated_tokens),
            format!("stop reason:         {stop}"),
        ];
        if let Some(first) = self.time_to_first_token_ms {
            lines.push(format!("time to first token: {first:.1} ms"));
        }
        if let Some(prefill) = self.prefill_tokens_per_s {
            lines.push(format!("prefill:             {prefill:.1} tok/s"));
        }
        if let Some(decode) = self.decode_tokens_per_s {
            lines.push(format!("decode:              {decode:.1} tok/s"));
        }
        lines.push(format!("total time:          {:.1} ms", self.total_time_ms));
        lines.push(format!(
            "context:             {} of {} tokens used, {} left ({})",
            self.max_seq_len - self.tokens_left,
            self.max_seq_len,
            self.tokens_left,
            self.context_policy
        ));
        lines.push(format!(
            "KV cache:            {:.1} MB allocated, {:.1} MB in use",
            megabytes(self.kv_cache_allocated_bytes),
            megabytes(self.kv_cache_active_bytes)
        ));
        let quantization = match self.quant_group_size {
            Some(group) => format!("{}, groups of {group}", self.quantization),
            None => self.quantization.clone(),
        };
        lines.push(format!("quantization:        {quantization}"));
        lines.push(format!(
            "linear weights:      {:.1} MB in memory ({:.1} MB at float32)",
            megabytes(self.linear_weight_bytes),
            megabytes(self.linear_weight_bytes_float32)
        ));
        lines.push(format!(
            "peak memory:         {:.1} MB (MLX)",
            megabytes(self.peak_memory_bytes)
        ));
        lines.join("\n")
    }
}
