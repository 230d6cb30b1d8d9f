//! Task 3: collect and completions

use crate::harness::{body_text, limits, prompt_text, reference, roomy, start, MODEL};
use axum::http::StatusCode;
use rstest::rstest;
use serde_json::{json, Value};
use serving::{FinishReason, Usage};
use std::sync::Arc;

fn usage_json(usage: Usage) -> Value {
    json!({
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.completion_tokens,
        "total_tokens": usage.total_tokens,
        "prompt_tokens_details": {"cached_tokens": usage.prompt_tokens_details.cached_tokens},
    })
}

fn finish_reason_name(reason: FinishReason) -> &'static str {
    match reason {
        FinishReason::Stop => "stop",
        FinishReason::Length | FinishReason::Cancelled => "length",
    }
}

#[rstest]
#[case::one_token_prompt(0)]
#[case::a_sentence(1)]
#[case::a_chat_turn_with_special_tokens(2)]
#[tokio::test(flavor = "multi_thread")]
async fn task_3_completion_matches_hf(#[case] sequence: usize) {
    let server = start(roomy());
    let reference = reference(sequence);
    let prompt = prompt_text(&server, &reference);
    // No max_tokens: OpenAI's default is 16, the length of HF's continuations.
    let body = server
        .post_ok(
            "/v1/completions",
            &json!({"model": MODEL, "prompt": prompt, "temperature": 0}),
        )
        .await;
    assert_eq!(body["object"], "text_completion", "{body}");
    assert_eq!(body["model"], MODEL, "{body}");
    assert!(
        body["id"]
            .as_str()
            .is_some_and(|id| id.starts_with("cmpl-")),
        "the id is \"cmpl-...\": {body}"
    );
    assert!(body["created"].is_u64(), "created is a Unix time: {body}");
    let choice = &body["choices"][0];
    assert_eq!(
        choice["text"].as_str(),
        Some(server.decode(&reference.continuation).as_str()),
        "seq{sequence} ({prompt:?}): the greedy text should be HF's continuation: {body}"
    );
    assert_eq!(choice["index"], 0, "{body}");
    assert_eq!(choice["finish_reason"], "length", "{body}");
    assert_eq!(
        body["usage"],
        json!({"prompt_tokens": reference.prompt.len(), "completion_tokens": 16,
            "total_tokens": reference.prompt.len() + 16,
            "prompt_tokens_details": {"cached_tokens": 0}}),
        "{body}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn task_3_generate_matches_hf_with_stats() {
    let server = start(roomy());
    let reference = reference(1);
    let prompt = prompt_text(&server, &reference);
    let body = server
        .post_ok(
            "/generate",
            &json!({"prompt": prompt, "max_new_tokens": reference.continuation.len()}),
        )
        .await;
    assert_eq!(
        body["text"].as_str(),
        Some(server.decode(&reference.continuation).as_str()),
        "/generate is greedy by default: {body}"
    );
    assert_eq!(body["finish_reason"], "length", "{body}");
    let stats = &body["stats"];
    assert_eq!(stats["prompt_tokens"], reference.prompt.len(), "{body}");
    assert_eq!(
        stats["generated_tokens"],
        reference.continuation.len(),
        "{body}"
    );
    for key in [
        "time_to_first_token_ms",
        "decode_tokens_per_s",
        "total_time_ms",
    ] {
        assert!(
            stats[key].as_f64().is_some_and(|value| value > 0.0),
            "stats.{key} should be positive: {body}"
        );
    }
}

#[rstest]
#[case::one_string(json!("jus"))]
#[case::a_list(json!(["sitex", "jus"]))]
#[tokio::test(flavor = "multi_thread")]
async fn task_3_completion_stops_before_a_stop_string(#[case] stop: Value) {
    let server = start(roomy());
    let prompt = prompt_text(&server, &reference(1));
    let body = server
        .post_ok(
            "/v1/completions",
            &json!({"prompt": prompt, "temperature": 0, "max_tokens": 16, "stop": stop}),
        )
        .await;
    let choice = &body["choices"][0];
    assert_eq!(choice["text"], " - sing n ", "with stop {stop}: {body}");
    assert_eq!(choice["finish_reason"], "stop", "with stop {stop}: {body}");
}

#[tokio::test(flavor = "multi_thread")]
async fn task_3_chat_completion_answers_as_the_assistant() {
    let server = start(roomy());
    let messages = json!([{"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hi, there!"}]);
    let templated = "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi, there!<|im_end|>\n<|im_start|>assistant\n";
    let expected = server.greedy(server.encode(templated), 12).await;
    let body = server
        .post_ok(
            "/v1/chat/completions",
            &json!({"model": MODEL, "messages": messages, "temperature": 0,
                "max_completion_tokens": 12}),
        )
        .await;
    assert_eq!(body["object"], "chat.completion", "{body}");
    assert!(
        body["id"]
            .as_str()
            .is_some_and(|id| id.starts_with("chatcmpl-")),
        "the id is \"chatcmpl-...\": {body}"
    );
    let choice = &body["choices"][0];
    assert_eq!(choice["message"]["role"], "assistant", "{body}");
    assert_eq!(
        choice["message"]["content"].as_str(),
        Some(expected.text().as_str()),
        "the answer is the greedy continuation of the chat template's text: {body}"
    );
    assert_eq!(
        choice["finish_reason"],
        finish_reason_name(expected.finish_reason),
        "{body}"
    );
    assert_eq!(body["usage"], usage_json(expected.usage), "{body}");
}

#[tokio::test(flavor = "multi_thread")]
async fn task_3_the_listed_model_answers() {
    let server = start(roomy());
    let health = server.get("/health").await;
    assert_eq!(health.status(), StatusCode::OK, "GET /health");
    let models = server.get("/v1/models").await;
    assert_eq!(models.status(), StatusCode::OK, "GET /v1/models");
    let models: Value = serde_json::from_str(&body_text(models).await).expect("JSON");
    assert_eq!(models["object"], "list", "{models}");
    let name = models["data"][0]["id"]
        .as_str()
        .unwrap_or_else(|| panic!("/v1/models lists no model id: {models}"));
    assert_eq!(name, MODEL, "{models}");
    let body = server
        .post_ok(
            "/v1/completions",
            &json!({"model": name, "prompt": "The sea", "max_tokens": 2}),
        )
        .await;
    assert_eq!(body["usage"]["completion_tokens"], 2, "{body}");
}

#[tokio::test(flavor = "multi_thread")]
async fn task_3_concurrent_requests_each_equal_their_solo_result() {
    let server = Arc::new(start(limits(3, 8, 2048)));
    let prompts: Vec<String> = (0..3)
        .map(|sequence| prompt_text(&server, &reference(sequence)))
        .collect();
    let request = |prompt: &str| json!({"prompt": prompt, "temperature": 0, "max_tokens": 16});
    let mut solo = Vec::new();
    for prompt in &prompts {
        let body = server.post_ok("/v1/completions", &request(prompt)).await;
        solo.push(body["choices"][0]["text"].clone());
    }
    // Six at once with three slots: three run together, three wait and join as others finish.
    let tasks: Vec<_> = (0..6)
        .map(|index| {
            let server = Arc::clone(&server);
            let body = request(&prompts[index % 3]);
            tokio::spawn(async move { server.post_ok("/v1/completions", &body).await })
        })
        .collect();
    for (index, task) in tasks.into_iter().enumerate() {
        let body = task
            .await
            .unwrap_or_else(|error| panic!("concurrent request {index} failed: {error}"));
        assert_eq!(
            body["choices"][0]["text"],
            solo[index % 3],
            "concurrent request {index} ({:?}) should equal the same request alone",
            prompts[index % 3]
        );
    }
}
