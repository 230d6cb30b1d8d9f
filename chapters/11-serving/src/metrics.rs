//! What `GET /metrics` reports, in Prometheus' text format.

use continuous_batching::{KvPoolStats, SpeculationCounts};
use prometheus::{
    Encoder, Gauge, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, Opts, Registry,
    TextEncoder,
};

/// The server's counters, gauges and histograms.
pub struct Metrics {
    registry: Registry,
    /// Requests answered, by endpoint and HTTP status.
    pub requests: IntCounterVec,
    pub prompt_tokens: IntCounter,
    pub generation_tokens: IntCounter,
    pub time_to_first_token: Histogram,
    pub inter_token_latency: Histogram,
    pub running: IntGauge,
    pub waiting: IntGauge,
    pub kv_cache_bytes: IntGauge,
    /// The paged KV pool (chapter 13's scheduler): its blocks, and what the prefix cache saved.
    pub kv_blocks_total: IntGauge,
    pub kv_blocks_used: IntGauge,
    pub kv_blocks_evictable: IntGauge,
    pub prefix_cache_hit_tokens: IntCounter,
    pub prefix_cache_miss_tokens: IntCounter,
    pub kv_block_evictions: IntCounter,
    pub preemptions: IntCounter,
    /// Speculative decoding (chapter 14): rows decoded, draft tokens verified and accepted, and
    /// the rates since the start.
    pub speculative_row_steps: IntCounter,
    pub speculative_draft_tokens: IntCounter,
    pub speculative_accepted_tokens: IntCounter,
    pub speculative_acceptance_rate: Gauge,
    pub speculative_tokens_per_row_step: Gauge,
}

impl Metrics {
    pub fn new() -> Self {
        let registry =
            Registry::new_custom(Some("tiny_llm".into()), None).expect("a valid metrics prefix");
        let requests = IntCounterVec::new(
            Opts::new("requests_total", "HTTP requests answered"),
            &["endpoint", "status"],
        )
        .expect("valid metric");
        let counter = |name: &str, help: &str| IntCounter::new(name, help).expect("valid metric");
        let gauge = |name: &str, help: &str| IntGauge::new(name, help).expect("valid metric");
        let float_gauge = |name: &str, help: &str| Gauge::new(name, help).expect("valid metric");
        let histogram = |name: &str, help: &str, buckets: Vec<f64>| {
            Histogram::with_opts(HistogramOpts::new(name, help).buckets(buckets))
                .expect("valid metric")
        };
        let metrics = Metrics {
            requests,
            prompt_tokens: counter("prompt_tokens_total", "Prompt tokens of accepted requests"),
            generation_tokens: counter("generation_tokens_total", "Tokens generated"),
            time_to_first_token: histogram(
                "time_to_first_token_seconds",
                "From a request's arrival to its first token",
                vec![0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0],
            ),
            inter_token_latency: histogram(
                "inter_token_latency_seconds",
                "Between two tokens of one request",
                vec![0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5],
            ),
            running: gauge("requests_running", "Requests prefilling or decoding"),
            waiting: gauge("requests_waiting", "Requests waiting for a slot"),
            kv_cache_bytes: gauge("kv_cache_bytes", "Bytes held by KV caches"),
            kv_blocks_total: gauge("kv_blocks_total", "Blocks in the paged KV pool"),
            kv_blocks_used: gauge("kv_blocks_used", "KV blocks that requests hold"),
            kv_blocks_evictable: gauge(
                "kv_blocks_evictable",
                "KV blocks no request holds, kept for the prefix cache",
            ),
            prefix_cache_hit_tokens: counter(
                "prefix_cache_hit_tokens_total",
                "Prompt tokens read from the prefix cache",
            ),
            prefix_cache_miss_tokens: counter(
                "prefix_cache_miss_tokens_total",
                "Prompt tokens computed (not in the prefix cache)",
            ),
            kv_block_evictions: counter(
                "kv_block_evictions_total",
                "Cached KV blocks reused for other content",
            ),
            preemptions: counter(
                "preemptions_total",
                "Requests preempted (to recompute later) when the KV pool ran out",
            ),
            speculative_row_steps: counter(
                "speculative_row_steps_total",
                "Rows decoded with speculation on: one per request per target forward",
            ),
            speculative_draft_tokens: counter(
                "speculative_draft_tokens_total",
                "Draft tokens verified by the target",
            ),
            speculative_accepted_tokens: counter(
                "speculative_accepted_tokens_total",
                "Draft tokens the target accepted",
            ),
            speculative_acceptance_rate: float_gauge(
                "speculative_acceptance_rate",
                "Accepted over drafted tokens since the start",
            ),
            speculative_tokens_per_row_step: float_gauge(
                "speculative_tokens_per_row_step",
                "Tokens a request gains per target forward since the start (1 without speculation)",
            ),
            registry,
        };
        let collectors: [Box<dyn prometheus::core::Collector>; 20] = [
            Box::new(metrics.requests.clone()),
            Box::new(metrics.prompt_tokens.clone()),
            Box::new(metrics.generation_tokens.clone()),
            Box::new(metrics.time_to_first_token.clone()),
            Box::new(metrics.inter_token_latency.clone()),
            Box::new(metrics.running.clone()),
            Box::new(metrics.waiting.clone()),
            Box::new(metrics.kv_cache_bytes.clone()),
            Box::new(metrics.kv_blocks_total.clone()),
            Box::new(metrics.kv_blocks_used.clone()),
            Box::new(metrics.kv_blocks_evictable.clone()),
            Box::new(metrics.prefix_cache_hit_tokens.clone()),
            Box::new(metrics.prefix_cache_miss_tokens.clone()),
            Box::new(metrics.kv_block_evictions.clone()),
            Box::new(metrics.preemptions.clone()),
            Box::new(metrics.speculative_row_steps.clone()),
            Box::new(metrics.speculative_draft_tokens.clone()),
            Box::new(metrics.speculative_accepted_tokens.clone()),
            Box::new(metrics.speculative_acceptance_rate.clone()),
            Box::new(metrics.speculative_tokens_per_row_step.clone()),
        ];
        for collector in collectors {
            metrics
                .registry
                .register(collector)
                .expect("each metric is registered once");
        }
        metrics
    }

    /// Sets the pool's gauges to `now` and adds to its counters what changed since `before`.
    pub fn record_kv_pool(&self, before: &KvPoolStats, now: &KvPoolStats) {
        self.kv_blocks_total.set(now.blocks_total as i64);
        self.kv_blocks_used.set(now.blocks_used as i64);
        self.kv_blocks_evictable.set(now.blocks_evictable as i64);
        self.prefix_cache_hit_tokens
            .inc_by(grew(now.prefix_hit_tokens, before.prefix_hit_tokens));
        self.prefix_cache_miss_tokens
            .inc_by(grew(now.prefix_miss_tokens, before.prefix_miss_tokens));
        self.kv_block_evictions
            .inc_by(grew(now.evictions, before.evictions));
        self.preemptions
            .inc_by(grew(now.preemptions, before.preemptions));
    }

    /// Adds to the speculation counters what changed since `before`, and sets the rates to
    /// `now`'s.
    pub fn record_speculation(&self, before: &SpeculationCounts, now: &SpeculationCounts) {
        self.speculative_row_steps
            .inc_by(grew(now.row_steps, before.row_steps));
        self.speculative_draft_tokens
            .inc_by(grew(now.drafted, before.drafted));
        self.speculative_accepted_tokens
            .inc_by(grew(now.accepted, before.accepted));
        if let Some(rate) = now.acceptance_rate() {
            self.speculative_acceptance_rate.set(rate);
        }
        if let Some(tokens) = now.tokens_per_row_step() {
            self.speculative_tokens_per_row_step.set(tokens);
        }
    }

    /// The text `GET /metrics` returns.
    pub fn render(&self) -> String {
        let mut text = Vec::new();
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut text)
            .expect("metrics encode to text");
        String::from_utf8(text).expect("Prometheus text is UTF-8")
    }
}

/// How much a counter grew from `before` to `now`, for `inc_by`.
fn grew(now: usize, before: usize) -> u64 {
    now.saturating_sub(before) as u64
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}
