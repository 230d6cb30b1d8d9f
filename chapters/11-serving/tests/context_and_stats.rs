//! The server's context policies and the native API's `stats`, on the tiny Llama fixture.
//! Expected token counts come from its tokenizer.json read with the tokenizers library, and
//! byte counts from its config.json, never from the engine.

use axum::{
    body::Body,
    http::{header, Request, StatusCode},
    Router,
};
use http_body_util::BodyExt;
use rstest::rstest;
use serde_json::{json, Value};
use serving::{
    router, AppState, ContextPolicy, EngineHandle, EngineLimits, Model, SchedulerConfig, Tokenizer,
};
use std::sync::Arc;
use test_support::fixture_path;
use tower::ServiceExt;

const MODEL: &str = "llama-tiny";
const PROMPT: &str = "the quick brown fox jumps over the lazy dog and then the dog sleeps";

fn server(max_seq_len: usize, context_policy: ContextPolicy) -> Router {
    let limits = EngineLimits {
        scheduler: SchedulerConfig {
            max_running: 2,
            token_budget: 64,
            prefill_chunk: 16,
        },
        max_waiting: 4,
        max_seq_len,
        context_policy,
    };
    let dir = fixture_path(MODEL);
    let tokenizer = || Tokenizer::load(&fixture_path(MODEL)).expect("the fixture's tokenizer");
    let engine = EngineHandle::start(move || Model::load(&dir), tokenizer(), limits)
        .unwrap_or_else(|error| panic!("EngineHandle::start on {MODEL}: {error}"));
    router(AppState {
        engine,
        tokenizer: Arc::new(tokenizer()),
        model_name: MODEL.into(),
        formats: None,
        chat_template: None,
    })
}

async fn post(app: &Router, path: &str, body: Value) -> (StatusCode, Value) {
    let request = Request::post(path)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(body.to_string()))
        .expect("a valid request");
    let response = app.clone().oneshot(request).await.expect("infallible");
    let status = response.status();
    let bytes = response
        .into_body()
        .collect()
        .await
        .expect("a body")
        .to_bytes();
    let value = serde_json::from_slice(&bytes)
        .unwrap_or_else(|error| panic!("{status}: not JSON ({error}): {bytes:?}"));
    (status, value)
}

fn prompt_tokens(text: &str) -> usize {
    tokenizers::Tokenizer::from_file(fixture_path(&format!("{MODEL}/tokenizer.json")))
        .expect("tokenizer.json")
        .encode(text, false)
        .expect("encodes")
        .len()
}

fn count(stats: &Value, field: &str) -> usize {
    stats[field]
        .as_u64()
        .unwrap_or_else(|| panic!("stats.{field} is not a count: {stats}")) as usize
}

#[tokio::test(flavor = "multi_thread")]
async fn generate_stats_carry_the_cli_fields() {
    let app = server(256, ContextPolicy::Reject);
    let (status, body) = post(
        &app,
        "/generate",
        json!({"prompt": "hello world", "max_new_tokens": 6}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let stats = &body["stats"];
    let prompt = prompt_tokens("hello world");
    let generated = count(stats, "generated_tokens");
    assert_eq!(count(stats, "prompt_tokens"), prompt);
    assert_eq!(count(stats, "prompt_tokens_dropped"), 0);
    assert_eq!(count(stats, "max_seq_len"), 256);
    assert_eq!(count(stats, "tokens_left"), 256 - prompt - generated);
    assert_eq!(stats["context_policy"], "reject");
    // 3 layers x (K and V) x 2 kv heads x head_dim 16 x 4 bytes for every position run.
    assert_eq!(
        count(stats, "kv_cache_active_bytes"),
        (prompt + generated - 1) * 3 * 2 * 2 * 16 * 4
    );
    // Tied embedding [512, 64] and 3 layers of q, o [64, 64], k, v [32, 64], gate, up [128, 64],
    // down [64, 128], float32.
    let float32 = (512 * 64 + 3 * (2 * 64 * 64 + 2 * 32 * 64 + 3 * 128 * 64)) * 4;
    assert_eq!(count(stats, "linear_weight_bytes_float32"), float32);
    assert_eq!(count(stats, "linear_weight_bytes"), float32);
    assert_eq!(stats["quantization"], "none");
    assert!(count(stats, "peak_memory_bytes") >= float32, "{stats}");
    let stop = stats["stop_reason"].as_str().expect("stop_reason");
    assert!(stop == "max_tokens" || stop == "stop", "{stats}");
    for field in [
        "time_to_first_token_ms",
        "prefill_tokens_per_s",
        "total_time_ms",
        "kv_cache_allocated_bytes",
    ] {
        assert!(
            stats[field].as_f64().is_some_and(|value| value > 0.0),
            "{field}: {stats}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn reject_names_the_budget_and_the_policy() {
    let app = server(16, ContextPolicy::Reject);
    for path in ["/generate", "/v1/completions"] {
        let (status, body) = post(
            &app,
            path,
            json!({"prompt": PROMPT, "max_new_tokens": 4, "max_tokens": 4}),
        )
        .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{path}: {body}");
        let message = body["error"]["message"].as_str().unwrap_or_default();
        assert!(
            message.contains("exceed the context of 16 tokens")
                && message.contains("--context-policy"),
            "{path}: {message}"
        );
    }
}

/// `(policy, max_new_tokens, expected prompt tokens kept for a budget of 16)`.
#[rstest]
#[case::truncate_left(ContextPolicy::TruncateLeft, 4, 15)]
#[case::truncate_right(ContextPolicy::TruncateRight, 4, 15)]
#[case::reserve_generation(ContextPolicy::ReserveGeneration, 4, 12)]
#[tokio::test(flavor = "multi_thread")]
async fn truncating_policies_fit_the_budget(
    #[case] policy: ContextPolicy,
    #[case] max_new_tokens: usize,
    #[case] kept: usize,
) {
    let total = prompt_tokens(PROMPT);
    assert!(total > 16, "the prompt must not fit: {total} tokens");
    let app = server(16, policy);
    let (status, body) = post(
        &app,
        "/generate",
        json!({"prompt": PROMPT, "max_new_tokens": max_new_tokens}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{policy}: {body}");
    let stats = &body["stats"];
    assert_eq!(count(stats, "prompt_tokens"), kept, "{policy}: {stats}");
    assert_eq!(
        count(stats, "prompt_tokens_dropped"),
        total - kept,
        "{policy}"
    );
    let generated = count(stats, "generated_tokens");
    assert!(
        generated <= (16 - kept).min(max_new_tokens),
        "{policy}: {stats}"
    );
    if stats["stop_reason"] != "stop" {
        let expected = if 16 - kept < max_new_tokens {
            "context_length"
        } else {
            "max_tokens"
        };
        assert_eq!(stats["stop_reason"], expected, "{policy}: {stats}");
    }

    // The OpenAI endpoint fits the same way and reports it in `usage`.
    let (status, body) = post(
        &app,
        "/v1/completions",
        json!({"prompt": PROMPT, "max_tokens": max_new_tokens, "temperature": 0}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{policy}: {body}");
    assert_eq!(body["usage"]["prompt_tokens"], kept, "{policy}: {body}");
}

#[tokio::test(flavor = "multi_thread")]
async fn allow_context_stop_refuses_a_prompt_that_fills_the_context() {
    let app = server(8, ContextPolicy::AllowContextStop);
    let (status, body) = post(&app, "/generate", json!({"prompt": PROMPT})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("leaves no room to generate"), "{message}");
}
