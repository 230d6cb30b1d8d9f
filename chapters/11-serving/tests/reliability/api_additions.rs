//! The API clients expect beyond the basics: content given as a list of text parts,
//! `/tokenize` and `/detokenize`, and `response_format` on a server that compiles none.

use crate::harness::{assert_error, start, MODEL};
use axum::http::StatusCode;
use serde_json::json;
use test_support::fixture_path;

/// A message whose content is a list of text parts is the same prompt as the joined string:
/// `/tokenize` says so, independently of generation.
#[tokio::test(flavor = "multi_thread")]
async fn content_parts_are_the_joined_text() {
    let server = start();
    let (status, as_string) = server
        .post_json(
            "/tokenize",
            &json!({"messages": [{"role": "user", "content": "Hello there, friend"}]}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{as_string}");
    let (status, as_parts) = server
        .post_json(
            "/tokenize",
            &json!({"messages": [{"role": "user", "content": [
                {"type": "text", "text": "Hello there,"},
                {"type": "text", "text": " friend"}
            ]}]}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{as_parts}");
    assert_eq!(as_parts["tokens"], as_string["tokens"], "parts vs string");
    let (status, chat) = server
        .post_json(
            "/v1/chat/completions",
            &json!({"messages": [{"role": "user", "content": [{"type": "text", "text": "Hi"}]}],
                    "max_tokens": 2}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "a chat with content parts: {chat}");
    let image = json!({"messages": [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": "data:,"}}
    ]}]});
    assert_error(
        "an image part",
        server.post_json("/v1/chat/completions", &image).await,
        StatusCode::BAD_REQUEST,
        &["image_url"],
    );
}

/// `/tokenize` gives the ids the `tokenizers` library gives for the same text, `/detokenize`
/// their text back.
#[tokio::test(flavor = "multi_thread")]
async fn tokenize_and_detokenize_round_trip() {
    let server = start();
    let reference = tokenizers::Tokenizer::from_file(fixture_path(MODEL).join("tokenizer.json"))
        .expect("the fixture's tokenizer.json loads");
    for text in [
        "The capital of France",
        "  spaces, digits 12345 and émojis 🙂",
    ] {
        let (status, body) = server
            .post_json("/tokenize", &json!({"prompt": text}))
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let expected = reference
            .encode(text, false)
            .expect("encode")
            .get_ids()
            .to_vec();
        assert_eq!(body["tokens"], json!(expected), "/tokenize {text:?}");
        assert_eq!(body["count"], json!(expected.len()), "count of {text:?}");
        let (status, back) = server
            .post_json("/detokenize", &json!({"tokens": expected}))
            .await;
        assert_eq!(status, StatusCode::OK, "{back}");
        assert_eq!(back["text"], json!(text), "/detokenize");
    }
    assert_error(
        "neither prompt nor messages",
        server.post_json("/tokenize", &json!({})).await,
        StatusCode::BAD_REQUEST,
        &["prompt", "messages"],
    );
}

/// Without a format compiler, structured output is refused by name instead of ignored.
#[tokio::test(flavor = "multi_thread")]
async fn response_format_without_a_compiler_is_a_400() {
    let server = start();
    let body = json!({"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 2,
                      "response_format": {"type": "json_object"}});
    assert_error(
        "json_object on a server without formats",
        server.post_json("/v1/chat/completions", &body).await,
        StatusCode::BAD_REQUEST,
        &["response_format"],
    );
    let text = json!({"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 2,
                      "response_format": {"type": "text"}});
    let (status, answer) = server.post_json("/v1/chat/completions", &text).await;
    assert_eq!(status, StatusCode::OK, "response_format text: {answer}");
}
