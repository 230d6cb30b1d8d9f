//! Task 4: openai_stream and sse

use crate::harness::{body_text, prompt_text, reference, roomy, start, MODEL};
use axum::{
    http::{header, StatusCode},
    response::Response,
};
use rstest::rstest;
use serde_json::{json, Value};

/// The `data:` of each server-sent event of `body`, in order.
fn sse_data(body: &str) -> Vec<String> {
    body.split("\n\n")
        .filter(|event| !event.trim().is_empty())
        .filter_map(|event| {
            let data: Vec<&str> = event
                .lines()
                .filter_map(|line| line.strip_prefix("data:"))
                .map(|data| data.strip_prefix(' ').unwrap_or(data))
                .collect();
            (!data.is_empty()).then(|| data.join("\n"))
        })
        .collect()
}

/// The JSON values of an OpenAI stream: every `data:` is JSON, the last is `[DONE]`.
pub(crate) async fn openai_events(response: Response) -> Vec<Value> {
    assert_eq!(response.status(), StatusCode::OK, "a streamed answer");
    let content_type = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default()
        .to_string();
    assert!(
        content_type.starts_with("text/event-stream"),
        "a stream is server-sent events (Content-Type: text/event-stream), not {content_type:?}"
    );
    let body = body_text(response).await;
    let data = sse_data(&body);
    assert_eq!(
        data.last().map(String::as_str),
        Some("[DONE]"),
        "an OpenAI stream ends with `data: [DONE]`; the body was:\n{body}"
    );
    data[..data.len() - 1]
        .iter()
        .map(|data| {
            serde_json::from_str(data).unwrap_or_else(|error| {
                panic!(
                    "every data before [DONE] is JSON ({error}): {data:?}\nthe body was:\n{body}"
                )
            })
        })
        .collect()
}

/// The text of one choice of a streamed chunk (`text` for completions, `delta.content` for chat).
fn streamed_text(choice: &Value) -> &str {
    choice["text"]
        .as_str()
        .or_else(|| choice["delta"]["content"].as_str())
        .unwrap_or_default()
}

/// Checks what every streamed chunk shares, and returns the text, the finish reason and the
/// usage chunk (if any).
fn read_openai_stream(events: &[Value], object: &str) -> (String, String, Option<Value>) {
    assert!(!events.is_empty(), "the stream has no chunks before [DONE]");
    let id = events[0]["id"].clone();
    let mut text = String::new();
    let mut finish_reason = None;
    let mut usage = None;
    for (index, event) in events.iter().enumerate() {
        assert_eq!(event["object"], object, "chunk {index}: {event}");
        assert_eq!(
            event["id"], id,
            "chunk {index} has another id than the first: {event}"
        );
        assert_eq!(event["model"], MODEL, "chunk {index}: {event}");
        let choices = event["choices"]
            .as_array()
            .unwrap_or_else(|| panic!("chunk {index} has no `choices` list: {event}"));
        if choices.is_empty() {
            assert!(
                usage.is_none(),
                "only one chunk has no choices (the usage chunk): {event}"
            );
            assert_eq!(
                index,
                events.len() - 1,
                "the usage chunk is the last: {event}"
            );
            usage = Some(event["usage"].clone());
            continue;
        }
        assert!(
            finish_reason.is_none(),
            "chunk {index} comes after the chunk with the finish_reason: {event}"
        );
        assert_eq!(choices.len(), 1, "chunk {index}: one choice: {event}");
        text.push_str(streamed_text(&choices[0]));
        if let Some(reason) = choices[0]["finish_reason"].as_str() {
            finish_reason = Some(reason.to_string());
        }
        assert!(
            event.get("usage").is_none_or(Value::is_null),
            "chunk {index} with choices carries no usage: {event}"
        );
    }
    let finish_reason =
        finish_reason.unwrap_or_else(|| panic!("no chunk has a finish_reason: {events:?}"));
    (text, finish_reason, usage)
}

#[rstest]
#[case::one_token_prompt(0)]
#[case::a_sentence(1)]
#[tokio::test(flavor = "multi_thread")]
async fn task_4_streamed_completion_equals_the_whole_one(#[case] sequence: usize) {
    let server = start(roomy());
    let reference = reference(sequence);
    let prompt = prompt_text(&server, &reference);
    let request = json!({"model": MODEL, "prompt": prompt, "temperature": 0, "max_tokens": 16});
    let mut streamed = request.clone();
    streamed["stream"] = json!(true);
    let events = openai_events(server.post("/v1/completions", &streamed).await).await;
    let (text, finish_reason, usage) = read_openai_stream(&events, "text_completion");
    assert_eq!(
        text,
        server.decode(&reference.continuation),
        "the streamed pieces, joined, should be HF's greedy continuation"
    );
    assert!(
        events.len() > 2,
        "a 16-token completion should arrive in several chunks, not {}",
        events.len()
    );
    assert_eq!(finish_reason, "length");
    assert_eq!(
        usage, None,
        "no usage chunk unless stream_options.include_usage"
    );
    let whole = server.post_ok("/v1/completions", &request).await;
    assert_eq!(
        whole["choices"][0]["text"],
        json!(text),
        "the whole completion"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn task_4_streamed_chat_completion_opens_with_the_role() {
    let server = start(roomy());
    let request = json!({"messages": [{"role": "user", "content": "Hi, there!"}],
        "temperature": 0, "max_tokens": 12});
    let whole = server.post_ok("/v1/chat/completions", &request).await;
    let mut streamed = request.clone();
    streamed["stream"] = json!(true);
    let events = openai_events(server.post("/v1/chat/completions", &streamed).await).await;
    assert_eq!(
        events[0]["choices"][0]["delta"]["role"], "assistant",
        "the first chunk's delta names the role: {}",
        events[0]
    );
    let (text, finish_reason, usage) = read_openai_stream(&events, "chat.completion.chunk");
    assert_eq!(
        json!(text),
        whole["choices"][0]["message"]["content"],
        "the streamed deltas, joined, should equal the whole answer {whole}"
    );
    assert_eq!(json!(finish_reason), whole["choices"][0]["finish_reason"]);
    assert_eq!(
        usage, None,
        "no usage chunk unless stream_options.include_usage"
    );
    let last = events.last().expect("chunks");
    assert_eq!(
        last["choices"][0]["delta"],
        json!({}),
        "the finishing chunk's delta is empty: {last}"
    );
}

#[rstest]
#[case::completions("/v1/completions", json!({"prompt": "The sea is wide,"}), "text_completion")]
#[case::chat_completions(
    "/v1/chat/completions",
    json!({"messages": [{"role": "user", "content": "Hi"}]}),
    "chat.completion.chunk"
)]
#[tokio::test(flavor = "multi_thread")]
async fn task_4_include_usage_adds_a_usage_chunk(
    #[case] path: &str,
    #[case] mut request: Value,
    #[case] object: &str,
) {
    let server = start(roomy());
    request["temperature"] = json!(0);
    request["max_tokens"] = json!(10);
    let whole = server.post_ok(path, &request).await;
    request["stream"] = json!(true);
    request["stream_options"] = json!({"include_usage": true});
    let events = openai_events(server.post(path, &request).await).await;
    let (_, _, usage) = read_openai_stream(&events, object);
    assert_eq!(
        usage,
        Some(whole["usage"].clone()),
        "with include_usage the last chunk before [DONE] is {{\"choices\": [], \"usage\": ...}}, the whole answer's usage"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn task_4_streamed_completion_stops_before_a_stop_string() {
    let server = start(roomy());
    let prompt = prompt_text(&server, &reference(1));
    let request = json!({"prompt": prompt, "temperature": 0, "max_tokens": 16,
        "stop": ["jus"], "stream": true});
    let events = openai_events(server.post("/v1/completions", &request).await).await;
    let (text, finish_reason, _) = read_openai_stream(&events, "text_completion");
    assert_eq!(
        text, " - sing n ",
        "the streamed text ends before the stop string"
    );
    assert_eq!(finish_reason, "stop");
}
