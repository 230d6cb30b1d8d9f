//! Tasks 3 and 4: log-probabilities in whole and streamed answers, in OpenAI's chat shape and
//! in the legacy completions shape, and the requests that ask for them wrongly.

use crate::{
    harness::{prompt_text, reference, roomy, start, MODEL},
    task_4_openai_stream::openai_events,
};
use axum::http::StatusCode;
use rstest::rstest;
use serde_json::{json, Value};
use test_support::{load_fixture, log_softmax};

/// The server's float32 log-probabilities within this of an f64 log-softmax of transformers'.
const TOLERANCE: f64 = 1e-4;

/// transformers' log-softmax (in f64) of its logits after the prompt of `seq{sequence}`.
fn transformers_logprobs(sequence: usize) -> Vec<f64> {
    let tensors = load_fixture(&format!("{MODEL}/reference.safetensors"));
    let logits = &tensors[&format!("seq{sequence}.logits")];
    let vocab = *logits.shape().last().expect("[L, V]") as usize;
    let all = logits.as_slice::<f32>();
    log_softmax(&all[all.len() - vocab..])
}

/// Whether the tokens' texts join into `text`. A token holding part of a character shows as
/// U+FFFD, which the text does not have once the character is whole: such tokens are not checked.
fn joins_into(tokens: &[&str], text: &str) -> bool {
    tokens.iter().any(|token| token.contains('\u{FFFD}')) || tokens.concat() == text
}

fn float(value: &Value, what: &str) -> f64 {
    value
        .as_f64()
        .unwrap_or_else(|| panic!("{what} should be a number, got {value}"))
}

/// A greedy completion with `logprobs: 5`: each token's text joins into the answer, its
/// log-probability is at least its alternatives' (it is the argmax), the alternatives are
/// sorted, and the first token's figures are transformers' (its logits after the prompt).
#[rstest]
#[case::a_sentence(1)]
#[case::a_chat_turn_with_special_tokens(2)]
#[tokio::test(flavor = "multi_thread")]
async fn task_3_completion_logprobs_are_the_models(#[case] sequence: usize) {
    let server = start(roomy());
    let reference = reference(sequence);
    let prompt = prompt_text(&server, &reference);
    let body = server
        .post_ok(
            "/v1/completions",
            &json!({"model": MODEL, "prompt": prompt, "temperature": 0, "max_tokens": 6,
                "logprobs": 5}),
        )
        .await;
    let choice = &body["choices"][0];
    let logprobs = &choice["logprobs"];
    let tokens: Vec<&str> = logprobs["tokens"]
        .as_array()
        .unwrap_or_else(|| panic!("choices[0].logprobs.tokens is a list: {body}"))
        .iter()
        .map(|token| token.as_str().expect("a token's text"))
        .collect();
    assert_eq!(tokens.len(), 6, "one entry per token: {body}");
    assert!(
        joins_into(&tokens, choice["text"].as_str().expect("text")),
        "the tokens' texts join into the answer: {body}"
    );
    let mut offset = 0;
    for (index, token) in tokens.iter().enumerate() {
        assert_eq!(logprobs["text_offset"][index], json!(offset), "{body}");
        offset += token.chars().count();
        let logprob = float(&logprobs["token_logprobs"][index], "token_logprobs");
        let top = logprobs["top_logprobs"][index]
            .as_object()
            .unwrap_or_else(|| panic!("top_logprobs[{index}] maps tokens to numbers: {body}"));
        assert!(top.len() <= 5 && !top.is_empty(), "{body}");
        let best = top
            .values()
            .map(|value| float(value, "a top logprob"))
            .fold(f64::NEG_INFINITY, f64::max);
        // Alternatives with the same text share one key, so the chosen one may be missing.
        assert!(
            logprob >= best,
            "token {index} was the argmax: no alternative is likelier: {body}"
        );
    }
    let expected = transformers_logprobs(sequence);
    let first = reference.continuation[0] as usize;
    let got = float(&logprobs["token_logprobs"][0], "token_logprobs[0]");
    assert!(
        (got - expected[first]).abs() <= TOLERANCE,
        "the first token's logprob is {got}, transformers' {}: {body}",
        expected[first]
    );
    let mut sorted = expected.clone();
    sorted.sort_by(|a, b| b.total_cmp(a));
    let mut top: Vec<f64> = logprobs["top_logprobs"][0]
        .as_object()
        .expect("checked")
        .values()
        .map(|value| float(value, "a top logprob"))
        .collect();
    top.sort_by(|a, b| b.total_cmp(a));
    for (rank, got) in top.iter().enumerate() {
        assert!(
            (got - sorted[rank]).abs() <= TOLERANCE,
            "the first token's alternative {rank} has logprob {got}, transformers' {}: {body}",
            sorted[rank]
        );
    }
}

/// `choices[].logprobs.content` of a chat answer, whole or joined from the stream's chunks.
fn chat_content(choices: &[&Value]) -> Vec<Value> {
    choices
        .iter()
        .filter_map(|choice| choice["logprobs"]["content"].as_array())
        .flatten()
        .cloned()
        .collect()
}

/// Chat with `logprobs` and `top_logprobs: 3`: every token has its text, bytes and three
/// alternatives, most likely first; streamed, the chunks carry the same entries, each with the
/// text it belongs to; a sampled answer's tokens are not always the likeliest.
#[rstest]
#[case::greedy(0.0)]
#[case::sampled(1.0)]
#[tokio::test(flavor = "multi_thread")]
async fn task_4_chat_logprobs_whole_and_streamed(#[case] temperature: f32) {
    let server = start(roomy());
    let request = json!({"messages": [{"role": "user", "content": "Hi, there!"}],
        "temperature": temperature, "seed": 5, "max_tokens": 10, "logprobs": true,
        "top_logprobs": 3});
    let whole = server.post_ok("/v1/chat/completions", &request).await;
    let content = chat_content(&[&whole["choices"][0]]);
    assert_eq!(content.len(), 10, "one entry per token: {whole}");
    let tokens: Vec<&str> = content
        .iter()
        .map(|entry| entry["token"].as_str().expect("token"))
        .collect();
    let answer = whole["choices"][0]["message"]["content"].as_str();
    assert!(joins_into(&tokens, answer.expect("content")), "{whole}");
    for entry in &content {
        let token = entry["token"].as_str().expect("token");
        assert_eq!(entry["bytes"], json!(token.as_bytes()), "{entry}");
        let top = entry["top_logprobs"].as_array().expect("top_logprobs");
        assert_eq!(top.len(), 3, "{entry}");
        let values: Vec<f64> = top
            .iter()
            .map(|t| float(&t["logprob"], "logprob"))
            .collect();
        assert!(
            values.windows(2).all(|pair| pair[0] >= pair[1]),
            "top_logprobs most likely first: {entry}"
        );
        let logprob = float(&entry["logprob"], "logprob");
        assert!(logprob <= values[0] && logprob <= 0.0, "{entry}");
        if temperature == 0.0 {
            assert_eq!(logprob, values[0], "greedy chooses the likeliest: {entry}");
        }
    }
    let mut streamed = request.clone();
    streamed["stream"] = json!(true);
    let events = openai_events(server.post("/v1/chat/completions", &streamed).await).await;
    let choices: Vec<&Value> = events.iter().map(|event| &event["choices"][0]).collect();
    assert_eq!(
        chat_content(&choices),
        content,
        "the streamed chunks' logprobs, joined, equal the whole answer's"
    );
    for choice in choices {
        if let Some(entries) = choice["logprobs"]["content"].as_array() {
            let tokens: Vec<&str> = entries
                .iter()
                .map(|entry| entry["token"].as_str().unwrap_or_default())
                .collect();
            let text = choice["delta"]["content"].as_str().unwrap_or_default();
            assert!(
                joins_into(&tokens, text),
                "a chunk's logprobs are those of its own text: {choice}"
            );
        }
    }
}

#[rstest]
#[case::top_logprobs_over_20(
    "/v1/chat/completions",
    json!({"logprobs": true, "top_logprobs": 21}),
    "top_logprobs"
)]
#[case::top_logprobs_without_logprobs(
    "/v1/chat/completions",
    json!({"top_logprobs": 2}),
    "logprobs"
)]
#[case::top_logprobs_negative(
    "/v1/chat/completions",
    json!({"logprobs": true, "top_logprobs": -1}),
    "top_logprobs"
)]
#[case::completion_logprobs_over_20("/v1/completions", json!({"logprobs": 21}), "logprobs")]
#[tokio::test(flavor = "multi_thread")]
async fn task_3_bad_logprobs_are_a_400(
    #[case] path: &str,
    #[case] fields: Value,
    #[case] named: &str,
) {
    let server = start(roomy());
    let mut request = if path.contains("chat") {
        json!({"messages": [{"role": "user", "content": "Hi"}]})
    } else {
        json!({"prompt": "Hi"})
    };
    for (key, value) in fields.as_object().expect("fields") {
        request[key] = value.clone();
    }
    let (status, body) = server.post_json(path, &request).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{request} answered {body}");
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains(named), "the error names `{named}`: {body}");
}
