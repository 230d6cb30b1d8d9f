//! What `GET /metrics` reports, in Prometheus' text format.

use prometheus::{
    Encoder, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, Opts, Registry,
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
            registry,
        };
        let collectors: [Box<dyn prometheus::core::Collector>; 8] = [
            Box::new(metrics.requests.clone()),
            Box::new(metrics.prompt_tokens.clone()),
            Box::new(metrics.generation_tokens.clone()),
            Box::new(metrics.time_to_first_token.clone()),
            Box::new(metrics.inter_token_latency.clone()),
            Box::new(metrics.running.clone()),
            Box::new(metrics.waiting.clone()),
            Box::new(metrics.kv_cache_bytes.clone()),
        ];
        for collector in collectors {
            metrics
                .registry
                .register(collector)
                .expect("each metric is registered once");
        }
        metrics
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

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}
