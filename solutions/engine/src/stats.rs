//! Timing a generation: time to first token, prefill and decode speeds; and its memory.

use decode::{Generation, StopReason};
use quantized_matmul::WeightBytes;
use std::time::{Duration, Instant};

/// "Prefill" is the first step (the whole prompt through the model), "decode" the steps after it
/// (one token each, against the KV cache).
pub struct Stats {
    prompt_tokens: usize,
    started: Instant,
    first_token: Option<Duration>,
    last_token: Duration,
    /// Tokens chosen, an EOS that ended generation included.
    chosen: usize,
}

impl Stats {
    pub fn start(prompt_tokens: usize) -> Self {
        Stats {
            prompt_tokens,
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

    pub fn report(
        &self,
        generation: &Generation,
        weights: &WeightBytes,
        cache_bytes: usize,
    ) -> String {
        let stop = match generation.stop_reason {
            StopReason::Eos => "end of sequence",
            StopReason::MaxTokens => "max new tokens",
            StopReason::StopString => "stop string",
        };
        let mut lines = vec![
            format!("prompt tokens:       {}", self.prompt_tokens),
            format!("generated tokens:    {}", generation.tokens.len()),
            format!("stop reason:         {stop}"),
        ];
        if let Some(first) = self.first_token {
            let decode = self.last_token - first;
            lines.push(format!(
                "time to first token: {:.1} ms",
                first.as_secs_f64() * 1e3
            ));
            lines.push(format!(
                "prefill:             {:.1} tok/s",
                self.prompt_tokens as f64 / first.as_secs_f64()
            ));
            if self.chosen > 1 {
                lines.push(format!(
                    "decode:              {:.1} tok/s",
                    (self.chosen - 1) as f64 / decode.as_secs_f64()
                ));
            }
        }
        let megabytes = |bytes: usize| bytes as f64 / 1e6;
        lines.push(format!(
            "linear weights:      {:.1} MB in memory ({:.1} MB at float32)",
            megabytes(weights.in_memory),
            megabytes(weights.float32)
        ));
        lines.push(format!(
            "KV cache:            {:.1} MB",
            megabytes(cache_bytes)
        ));
        lines.join("\n")
    }
}
