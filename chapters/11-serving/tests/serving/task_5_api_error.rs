//! Task 5: ApiError::into_response

use crate::harness::{body_text, limits, roomy, start, LONG_PROMPT, LONG_TOKENS, MODEL};
use axum::{
    body::Body,
    http::{header, Request, StatusCode},
};
use rstest::rstest;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

/// Checks an error body against OpenAI's shape, `{"error": {"message", "type", "param", "code"}}`.
fn assert_openai_error(
    what: &str,
    (status, body): (StatusCode, Value),
    expected_status: StatusCode,
    expected_type: &str,
) -> String {
    assert_eq!(status, expected_status, "{what}: answered {body}");
    let error = &body["error"];
    let message = error["message"].as_str().unwrap_or_else(|| {
        panic!("{what}: the body is not {{\"error\": {{\"message\": ...}}}}: {body}")
    });
    assert!(!message.is_empty(), "{what}: the error message is empty");
    assert_eq!(error["type"], expected_type, "{what}: error type in {body}");
    for key in ["param", "code"] {
        assert!(
            error.get(key).is_some(),
            "{what}: the error has no {key:?} (null when there is none): {body}"
        );
    }
    message.to_string()
}

#[rstest]
#[case::completions("/v1/completions")]
#[case::chat_completions("/v1/chat/completions")]
#[case::generate("/generate")]
#[tokio::test(flavor = "multi_thread")]
async fn task_5_malformed_json_is_400(#[case] path: &str) {
    let server = start(roomy());
    let response = server
        .post_text(path, r#"{"model": "llama-tiny", "prompt": "#)
        .await;
    let status = response.status();
    let body = serde_json::from_str(&body_text(response).await)
        .unwrap_or_else(|error| panic!("the error body is JSON: {error}"));
    assert_openai_error(
        &format!("POST {path} with a cut JSON body"),
        (status, body),
        StatusCode::BAD_REQUEST,
        "invalid_request_error",
    );
}

#[rstest]
#[case::prompt_is_a_number("/v1/completions", json!({"prompt": 5}))]
#[case::messages_is_a_string("/v1/chat/completions", json!({"messages": "Hi"}))]
#[case::max_tokens_is_text("/v1/completions", json!({"prompt": "The", "max_tokens": "many"}))]
#[case::no_prompt("/v1/completions", json!({"max_tokens": 4}))]
#[tokio::test(flavor = "multi_thread")]
async fn task_5_a_wrong_field_is_400(#[case] path: &str, #[case] body: Value) {
    let server = start(roomy());
    assert_openai_error(
        &format!("POST {path} {body}"),
        server.post_json(path, &body).await,
        StatusCode::BAD_REQUEST,
        "invalid_request_error",
    );
}

#[rstest]
#[case::completions("/v1/completions", json!({"prompt": "The", "temperature": -1}))]
#[case::chat_completions(
    "/v1/chat/completions",
    json!({"messages": [{"role": "user", "content": "Hi"}], "temperature": -0.5})
)]
#[tokio::test(flavor = "multi_thread")]
async fn task_5_negative_temperature_is_400_naming_it(#[case] path: &str, #[case] body: Value) {
    let server = start(roomy());
    let message = assert_openai_error(
        &format!("POST {path} {body}"),
        server.post_json(path, &body).await,
        StatusCode::BAD_REQUEST,
        "invalid_request_error",
    );
    assert!(
        message.contains("temperature"),
        "the message should name `temperature`: {message:?}"
    );
}

#[rstest]
#[case::completions("/v1/completions", json!({"model": "gpt-4o", "prompt": "The"}))]
#[case::chat_completions(
    "/v1/chat/completions",
    json!({"model": "gpt-4o", "messages": [{"role": "user", "content": "Hi"}]})
)]
#[tokio::test(flavor = "multi_thread")]
async fn task_5_an_unknown_model_is_404(#[case] path: &str, #[case] body: Value) {
    let server = start(roomy());
    let (status, answer) = server.post_json(path, &body).await;
    let message = assert_openai_error(
        &format!("POST {path} {body}"),
        (status, answer.clone()),
        StatusCode::NOT_FOUND,
        "not_found_error",
    );
    assert!(
        message.contains("gpt-4o") && message.contains(MODEL),
        "the message should name both models: {message:?}"
    );
    assert_eq!(answer["error"]["code"], "model_not_found", "{answer}");
}

#[rstest]
#[case::post("POST", "/v1/embeddings")]
#[case::get("GET", "/v2/models")]
#[tokio::test(flavor = "multi_thread")]
async fn task_5_an_unknown_route_is_404(#[case] method: &str, #[case] path: &str) {
    let server = start(roomy());
    let request = Request::builder()
        .method(method)
        .uri(path)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from("{}"))
        .expect("a valid request");
    let response = server.send(request).await;
    let status = response.status();
    let body = serde_json::from_str(&body_text(response).await)
        .unwrap_or_else(|error| panic!("the error body is JSON: {error}"));
    assert_openai_error(
        &format!("{method} {path}"),
        (status, body),
        StatusCode::NOT_FOUND,
        "not_found_error",
    );
}

#[rstest]
#[case::completions("/v1/completions", json!({"prompt": "The sea is wide,", "max_tokens": 60}))]
#[case::generate("/generate", json!({"prompt": "The sea is wide,", "max_new_tokens": 60}))]
#[tokio::test(flavor = "multi_thread")]
async fn task_5_a_prompt_over_max_seq_len_is_400(#[case] path: &str, #[case] body: Value) {
    let server = start(limits(2, 2, 64));
    let message = assert_openai_error(
        &format!("POST {path} {body} with max_seq_len 64"),
        server.post_json(path, &body).await,
        StatusCode::BAD_REQUEST,
        "invalid_request_error",
    );
    assert!(
        message.contains("64"),
        "the message should name the limit: {message:?}"
    );
}

#[rstest]
#[case::completions("/v1/completions", json!({"prompt": "The", "n": 2}))]
#[case::chat_completions(
    "/v1/chat/completions",
    json!({"messages": [{"role": "user", "content": "Hi"}], "n": 3})
)]
#[tokio::test(flavor = "multi_thread")]
async fn task_5_more_than_one_choice_is_400(#[case] path: &str, #[case] body: Value) {
    let server = start(roomy());
    assert_openai_error(
        &format!("POST {path} {body}"),
        server.post_json(path, &body).await,
        StatusCode::BAD_REQUEST,
        "invalid_request_error",
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn task_5_over_capacity_is_503_with_retry_after() {
    let server = start(limits(1, 0, 2048));
    let long = server
        .post(
            "/v1/completions",
            &json!({"prompt": LONG_PROMPT, "temperature": 0, "max_tokens": LONG_TOKENS,
                "stream": true}),
        )
        .await;
    assert_eq!(long.status(), StatusCode::OK, "the long streamed request");
    for (path, body) in [
        (
            "/v1/completions",
            json!({"prompt": "The sea", "max_tokens": 2}),
        ),
        (
            "/v1/chat/completions",
            json!({"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 2}),
        ),
        (
            "/generate",
            json!({"prompt": "The sea", "max_new_tokens": 2}),
        ),
    ] {
        let response = server.post(path, &body).await;
        let status = response.status();
        let retry_after = response
            .headers()
            .get(header::RETRY_AFTER)
            .map(|value| value.to_str().unwrap_or_default().to_string());
        let answer = serde_json::from_str(&body_text(response).await)
            .unwrap_or_else(|error| panic!("the error body is JSON: {error}"));
        let what = format!("POST {path} while the only slot is taken and no request may wait");
        assert_openai_error(
            &what,
            (status, answer),
            StatusCode::SERVICE_UNAVAILABLE,
            "server_overloaded",
        );
        assert!(
            retry_after
                .as_deref()
                .is_some_and(|seconds| seconds.parse::<u64>().is_ok()),
            "{what}: a 503 says when to retry (Retry-After: seconds), got {retry_after:?}"
        );
    }
    drop(long);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (status, body) = server
            .post_json(
                "/v1/completions",
                &json!({"prompt": "The sea", "max_tokens": 2}),
            )
            .await;
        if status == StatusCode::OK {
            break;
        }
        assert!(
            status == StatusCode::SERVICE_UNAVAILABLE && Instant::now() < deadline,
            "after the long request's client left, a request should get the slot; got {status} {body}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
