//! Bad requests, each a 4xx naming the problem; the server serves the next request.

use crate::harness::{assert_error, limits, start, start_with, MODEL};
use axum::{
    body::Body,
    http::{Request, StatusCode},
};
use futures_util::stream;
use serde_json::{json, Value};
use serving::ServerOptions;
use std::io;

#[tokio::test(flavor = "multi_thread")]
async fn every_bad_request_is_a_named_4xx_and_the_server_keeps_serving() {
    let server = start_with(limits(4, 64), &ServerOptions::default());
    let chat = |messages: Value| json!({"messages": messages, "max_tokens": 2});
    let user = json!([{"role": "user", "content": "Hi"}]);
    let completion = |extra: Value| {
        let mut body = json!({"prompt": "The", "max_tokens": 2});
        body.as_object_mut()
            .expect("an object")
            .extend(extra.as_object().expect("an object").clone());
        body
    };
    let bad = StatusCode::BAD_REQUEST;
    let cases: Vec<(&str, &str, Value, StatusCode, Vec<&str>)> = vec![
        (
            "a prompt of the wrong type",
            "/v1/completions",
            json!({"prompt": 5}),
            bad,
            vec!["prompt", "expected a string"],
        ),
        (
            "messages of the wrong type",
            "/v1/chat/completions",
            json!({"messages": "Hi"}),
            bad,
            vec!["messages"],
        ),
        (
            "max_tokens as text",
            "/v1/completions",
            completion(json!({"max_tokens": "many"})),
            bad,
            vec!["max_tokens"],
        ),
        (
            "no prompt",
            "/v1/completions",
            json!({"max_tokens": 2}),
            bad,
            vec!["missing field `prompt`"],
        ),
        (
            "no messages",
            "/v1/chat/completions",
            json!({"max_tokens": 2}),
            bad,
            vec!["missing field `messages`"],
        ),
        (
            "a message without content",
            "/v1/chat/completions",
            chat(json!([{"role": "user"}])),
            bad,
            vec!["content"],
        ),
        (
            "neither prompt nor messages",
            "/generate",
            json!({"max_new_tokens": 2}),
            bad,
            vec!["prompt", "messages"],
        ),
        (
            "an empty prompt",
            "/v1/completions",
            completion(json!({"prompt": ""})),
            bad,
            vec!["no tokens"],
        ),
        (
            "empty messages",
            "/v1/chat/completions",
            chat(json!([])),
            bad,
            vec!["`messages` is empty"],
        ),
        (
            "negative max_tokens",
            "/v1/completions",
            completion(json!({"max_tokens": -1})),
            bad,
            vec!["max_tokens"],
        ),
        (
            "zero max_tokens",
            "/v1/completions",
            completion(json!({"max_tokens": 0})),
            bad,
            vec!["max_tokens", "at least 1"],
        ),
        (
            "huge max_tokens",
            "/v1/completions",
            completion(json!({"max_tokens": 1_000_000_000_000u64})),
            bad,
            vec!["max_tokens", "--max-seq-len 64"],
        ),
        (
            "max_tokens of usize::MAX",
            "/v1/completions",
            completion(json!({"max_tokens": u64::MAX})),
            bad,
            vec!["--max-seq-len 64"],
        ),
        (
            "max_new_tokens past the limit",
            "/generate",
            json!({"prompt": "The", "max_new_tokens": 65}),
            bad,
            vec!["max_new_tokens", "64"],
        ),
        (
            "a negative temperature",
            "/v1/completions",
            completion(json!({"temperature": -1})),
            bad,
            vec!["temperature"],
        ),
        (
            "a huge temperature",
            "/v1/completions",
            completion(json!({"temperature": 1e30})),
            bad,
            vec!["temperature", "between 0 and 2"],
        ),
        (
            "a temperature past f32",
            "/v1/chat/completions",
            json!({"messages": user, "max_tokens": 2, "temperature": 1e39}),
            bad,
            vec!["temperature"],
        ),
        (
            "top_p of 0",
            "/v1/completions",
            completion(json!({"top_p": 0})),
            bad,
            vec!["top_p"],
        ),
        (
            "top_p above 1",
            "/v1/completions",
            completion(json!({"top_p": 1.5})),
            bad,
            vec!["top_p"],
        ),
        (
            "a negative top_p",
            "/generate",
            json!({"prompt": "The", "max_new_tokens": 2, "top_p": -0.1}),
            bad,
            vec!["top_p"],
        ),
        (
            "min_p above 1",
            "/v1/completions",
            completion(json!({"min_p": 2})),
            bad,
            vec!["min_p"],
        ),
        (
            "a zero repetition penalty",
            "/v1/completions",
            completion(json!({"repetition_penalty": 0})),
            bad,
            vec!["repetition_penalty"],
        ),
        (
            "five stop strings",
            "/v1/completions",
            completion(json!({"stop": ["a", "b", "c", "d", "e"]})),
            bad,
            vec!["`stop` has 5 strings", "at most 4"],
        ),
        (
            "a 300-byte stop string",
            "/v1/completions",
            completion(json!({"stop": "x".repeat(300)})),
            bad,
            vec!["300 bytes"],
        ),
        (
            "a stop list of numbers",
            "/v1/completions",
            completion(json!({"stop": [1, 2]})),
            bad,
            vec!["stop"],
        ),
        (
            "an unknown model",
            "/v1/completions",
            completion(json!({"model": "gpt-4o"})),
            StatusCode::NOT_FOUND,
            vec!["gpt-4o", MODEL],
        ),
        (
            "an unsupported role",
            "/v1/chat/completions",
            chat(json!([{"role": "narrator", "content": "42"}])),
            bad,
            vec!["messages[0]", "\"narrator\"", "user"],
        ),
        (
            "a tool result that answers no call",
            "/v1/chat/completions",
            chat(json!([{"role": "tool", "content": "42"}])),
            bad,
            vec!["messages[0]", "tool_call_id"],
        ),
        (
            "a prompt over --max-seq-len",
            "/v1/chat/completions",
            json!({"messages": [{"role": "user", "content": "word ".repeat(80)}], "max_tokens": 2}),
            bad,
            vec!["--max-seq-len 64"],
        ),
        (
            "two choices",
            "/v1/completions",
            completion(json!({"n": 2})),
            bad,
            vec!["n = 2"],
        ),
    ];
    for (what, path, body, status, names) in cases {
        let what = format!("{what} (POST {path} {body})");
        assert_error(&what, server.post_json(path, &body).await, status, &names);
        server.assert_still_serves(&what).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn malformed_bodies_are_400_naming_json() {
    let server = start();
    let cases: [(&str, Vec<u8>); 4] = [
        ("a cut JSON body", br#"{"prompt": "The", "#.to_vec()),
        (
            "NaN, which JSON does not have",
            br#"{"prompt": "The", "temperature": NaN}"#.to_vec(),
        ),
        (
            "bytes that are not UTF-8",
            b"{\"prompt\": \"\xff\xfe\xfd\"}".to_vec(),
        ),
        ("an array instead of an object", b"[1, 2, 3]".to_vec()),
    ];
    for (what, body) in cases {
        let response = server.post_bytes("/v1/completions", body).await;
        assert_error(
            what,
            server.answer(response).await,
            StatusCode::BAD_REQUEST,
            &["JSON"],
        );
        server.assert_still_serves(what).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_body_without_a_json_content_type_is_415() {
    let server = start();
    let request = Request::post("/v1/completions")
        .body(Body::from(r#"{"prompt": "The"}"#))
        .expect("a valid request");
    let response = server.send(request).await;
    let what = "a body without Content-Type";
    assert_error(
        what,
        server.answer(response).await,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        &["application/json"],
    );
    server.assert_still_serves(what).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn unknown_fields_are_ignored() {
    // OpenAI's clients send fields this server has no use for (`user`, penalties at 0,
    // `logit_bias`...): they are accepted and ignored, as the book documents.
    let server = start();
    let (status, body) = server
        .post_json(
            "/v1/chat/completions",
            &json!({"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 2,
                "user": "someone", "frequency_penalty": 0, "no_such_field": {"deep": [1, 2]}}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["usage"]["completion_tokens"], 2, "{body}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_body_over_the_limit_is_413_naming_it() {
    let options = ServerOptions {
        max_body_bytes: 1024,
        ..ServerOptions::default()
    };
    let server = start_with(limits(4, 2048), &options);
    let big = json!({"prompt": "word ".repeat(400), "max_tokens": 2}).to_string();
    let response = server.post_bytes("/v1/completions", big.clone()).await;
    let what = "a 2 KB body with a 1 KB limit";
    assert_error(
        what,
        server.answer(response).await,
        StatusCode::PAYLOAD_TOO_LARGE,
        &["1024 bytes", "--max-body-bytes"],
    );
    // Chunked, without a Content-Length to refuse up front.
    let chunks: Vec<Result<String, io::Error>> = big
        .as_bytes()
        .chunks(100)
        .map(|piece| Ok(String::from_utf8_lossy(piece).into_owned()))
        .collect();
    let response = server
        .post_bytes("/v1/completions", Body::from_stream(stream::iter(chunks)))
        .await;
    assert_error(
        "a chunked 2 KB body",
        server.answer(response).await,
        StatusCode::PAYLOAD_TOO_LARGE,
        &["1024 bytes"],
    );
    server.assert_still_serves(what).await;
}
