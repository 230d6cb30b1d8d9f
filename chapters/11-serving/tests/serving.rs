//! Chapter 11 tests. Run them with `cargo xtask test serving` (add `--task N` for one task).
//! Every test starts an engine thread on the tiny Llama of `models/fixtures/llama-tiny` and sends
//! HTTP requests to `router(state)` in-process (no port). Greedy texts are compared with HF
//! transformers' greedy continuations (`reference.safetensors`), decoded by the tokenizer.

use axum::{
    body::Body,
    http::{header, Request, StatusCode},
    response::Response,
    Router,
};
use http_body_util::BodyExt;
use rstest::rstest;
use serde_json::{json, Value};
use serving::{
    router, AppState, Chunk, ContextPolicy, EngineHandle, EngineLimits, FinishReason,
    GenerateParams, Model, RequestStream, SamplingParams, SchedulerConfig, SubmitError, Timings,
    Tokenizer, Usage,
};
use std::{
    future::Future,
    path::PathBuf,
    sync::Arc,
    time::{Duration, Instant},
};
use test_support::{fixture_path, load_fixture};
use tower::ServiceExt;

const MODEL: &str = "llama-tiny";

/// The longest any single await may take: the tiny model makes ~300 tokens/s even unoptimized.
const PATIENCE: Duration = Duration::from_secs(60);

/// A request that runs for seconds: the tiny model's greedy continuation of "The" meets no EOS
/// in its first 1500 tokens.
const LONG_PROMPT: &str = "The";
const LONG_TOKENS: usize = 1000;

fn limits(max_running: usize, max_waiting: usize, max_seq_len: usize) -> EngineLimits {
    EngineLimits {
        scheduler: SchedulerConfig {
            max_running,
            token_budget: 64,
            prefill_chunk: 16,
        },
        max_waiting,
        max_seq_len,
        context_policy: ContextPolicy::Reject,
    }
}

fn roomy() -> EngineLimits {
    limits(4, 8, 2048)
}

fn model_dir() -> PathBuf {
    fixture_path(MODEL)
}

fn load_tokenizer() -> Tokenizer {
    let dir = model_dir();
    Tokenizer::load(&dir)
        .unwrap_or_else(|error| panic!("Tokenizer::load({}): {error}", dir.display()))
}

/// The engine, its tokenizer and the router, as `cargo xtask run serve` builds them.
struct TestServer {
    engine: EngineHandle,
    tokenizer: Arc<Tokenizer>,
    app: Router,
}

fn start(limits: EngineLimits) -> TestServer {
    let dir = model_dir();
    let engine = EngineHandle::start(move || Model::load(&dir), load_tokenizer(), limits)
        .unwrap_or_else(|error| panic!("EngineHandle::start on {MODEL}: {error}"));
    let tokenizer = Arc::new(load_tokenizer());
    let app = router(AppState {
        engine: engine.clone(),
        tokenizer: Arc::clone(&tokenizer),
        model_name: MODEL.into(),
    });
    TestServer {
        engine,
        tokenizer,
        app,
    }
}

async fn within<T>(what: &str, future: impl Future<Output = T>) -> T {
    tokio::time::timeout(PATIENCE, future)
        .await
        .unwrap_or_else(|_| panic!("{what} took more than {PATIENCE:?}"))
}

impl TestServer {
    fn encode(&self, text: &str) -> Vec<u32> {
        self.tokenizer
            .encode(text)
            .unwrap_or_else(|error| panic!("encode({text:?}): {error}"))
    }

    fn decode(&self, tokens: &[u32]) -> String {
        self.tokenizer
            .decode(tokens)
            .unwrap_or_else(|error| panic!("decode({tokens:?}): {error}"))
    }

    async fn send(&self, request: Request<Body>) -> Response {
        let what = format!("{} {}", request.method(), request.uri());
        match within(&what, self.app.clone().oneshot(request)).await {
            Ok(response) => response,
            Err(never) => match never {},
        }
    }

    async fn get(&self, path: &str) -> Response {
        let request = Request::get(path)
            .body(Body::empty())
            .expect("a valid request");
        self.send(request).await
    }

    /// POSTs `body` as it is, labelled JSON.
    async fn post_text(&self, path: &str, body: &str) -> Response {
        let request = Request::post(path)
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(body.to_string()))
            .expect("a valid request");
        self.send(request).await
    }

    async fn post(&self, path: &str, body: &Value) -> Response {
        self.post_text(path, &body.to_string()).await
    }

    /// POSTs `body` and reads the whole answer as JSON.
    async fn post_json(&self, path: &str, body: &Value) -> (StatusCode, Value) {
        let response = self.post(path, body).await;
        let status = response.status();
        let text = body_text(response).await;
        let value = serde_json::from_str(&text).unwrap_or_else(|error| {
            panic!("POST {path} {body} answered {status} with a body that is not JSON ({error}): {text:?}")
        });
        (status, value)
    }

    /// POSTs `body`, expects 200 and its JSON.
    async fn post_ok(&self, path: &str, body: &Value) -> Value {
        let (status, value) = self.post_json(path, body).await;
        assert_eq!(
            status,
            StatusCode::OK,
            "POST {path} {body} answered {value}"
        );
        value
    }

    async fn metrics(&self) -> String {
        let response = self.get("/metrics").await;
        assert_eq!(response.status(), StatusCode::OK, "GET /metrics");
        body_text(response).await
    }

    /// Greedy generation through the engine alone (no HTTP), for the handlers to match.
    async fn greedy(&self, prompt_tokens: Vec<u32>, max_new_tokens: usize) -> Generation {
        let stream = self
            .engine
            .submit(GenerateParams {
                prompt_tokens,
                max_new_tokens,
                sampling: SamplingParams::default(),
                stop: Vec::new(),
            })
            .unwrap_or_else(|error| panic!("submit: {error:?}"));
        run_to_end(stream).await
    }
}

async fn body_text(response: Response) -> String {
    let bytes = within("reading a response body", response.into_body().collect())
        .await
        .unwrap_or_else(|error| panic!("reading a response body: {error}"))
        .to_bytes();
    String::from_utf8(bytes.to_vec()).expect("a UTF-8 body")
}

/// The next piece of a streamed body, `None` at its end.
async fn next_piece(body: &mut Body) -> Option<String> {
    loop {
        let frame = within("waiting for the next streamed piece", body.frame())
            .await?
            .unwrap_or_else(|error| panic!("reading a streamed body: {error}"));
        if let Ok(data) = frame.into_data() {
            return Some(String::from_utf8(data.to_vec()).expect("a UTF-8 body"));
        }
    }
}

/// What a request's stream carried, up to its `Done`.
#[derive(Debug)]
struct Generation {
    pieces: Vec<String>,
    finish_reason: FinishReason,
    usage: Usage,
    timings: Timings,
}

impl Generation {
    fn text(&self) -> String {
        self.pieces.concat()
    }
}

async fn run_to_end(mut stream: RequestStream) -> Generation {
    let id = stream.id;
    let mut pieces = Vec::new();
    loop {
        let chunk = within(
            &format!("waiting for request {id}'s next chunk"),
            stream.chunks.recv(),
        )
        .await;
        match chunk {
            Some(Chunk::Text(text)) => pieces.push(text),
            Some(Chunk::Done {
                finish_reason,
                usage,
                timings,
            }) => {
                return Generation {
                    pieces,
                    finish_reason,
                    usage,
                    timings,
                }
            }
            Some(Chunk::Rejected(message) | Chunk::Failed(message)) => {
                panic!("request {id} failed after {pieces:?}: {message}")
            }
            None => panic!(
                "request {id}'s channel closed after {pieces:?} without a Done chunk: the engine thread dropped it (did the engine thread panic? see its message above)"
            ),
        }
    }
}

/// HF transformers' prompts and greedy continuations for the tiny Llama.
struct Reference {
    prompt: Vec<u32>,
    continuation: Vec<u32>,
}

fn reference(sequence: usize) -> Reference {
    let tensors = load_fixture(&format!("{MODEL}/reference.safetensors"));
    let ids = |name: String| -> Vec<u32> {
        let array = tensors
            .get(&name)
            .unwrap_or_else(|| panic!("{MODEL}/reference.safetensors has no {name}"));
        array
            .as_slice::<i32>()
            .iter()
            .map(|&id| id as u32)
            .collect()
    };
    Reference {
        prompt: ids(format!("seq{sequence}.tokens")),
        continuation: ids(format!("seq{sequence}.greedy_continuation")),
    }
}

/// A reference prompt as text; only sequences whose text encodes back to the same tokens can
/// go through the HTTP API, which takes text.
fn prompt_text(server: &TestServer, reference: &Reference) -> String {
    let text = server.decode(&reference.prompt);
    assert_eq!(
        server.encode(&text),
        reference.prompt,
        "the reference prompt {text:?} does not encode back to its tokens"
    );
    text
}

/// The value of the Prometheus sample whose line starts with `name` (and contains `labels`).
fn sample(metrics: &str, name: &str, labels: &[&str]) -> Option<f64> {
    metrics
        .lines()
        .filter(|line| !line.starts_with('#'))
        .filter(|line| line.starts_with(name) && labels.iter().all(|label| line.contains(label)))
        .find_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            let rest = &series[name.len()..];
            (rest.is_empty() || rest.starts_with('{'))
                .then(|| value.parse().ok())
                .flatten()
        })
}

fn gauge(metrics: &str, name: &str) -> f64 {
    sample(metrics, name, &[]).unwrap_or_else(|| panic!("/metrics has no {name}:\n{metrics}"))
}

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
async fn openai_events(response: Response) -> Vec<Value> {
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

fn usage_json(usage: Usage) -> Value {
    json!({
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.completion_tokens,
        "total_tokens": usage.total_tokens,
    })
}

fn finish_reason_name(reason: FinishReason) -> &'static str {
    match reason {
        FinishReason::Stop => "stop",
        FinishReason::Length | FinishReason::Cancelled => "length",
    }
}

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

// ---------------------------------------------------------------------------------------------
// Task 1: EngineHandle::submit

fn greedy_params(prompt_tokens: Vec<u32>, max_new_tokens: usize) -> GenerateParams {
    GenerateParams {
        prompt_tokens,
        max_new_tokens,
        sampling: SamplingParams::default(),
        stop: Vec::new(),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn task_1_submit_returns_the_request_stream() {
    let server = start(roomy());
    let prompt = server.encode("The sea is wide,");
    let stream = server
        .engine
        .submit(greedy_params(prompt.clone(), 4))
        .unwrap_or_else(|error| panic!("submit of a valid request: {error:?}"));
    assert_eq!(
        stream.prompt_tokens,
        prompt.len(),
        "RequestStream::prompt_tokens is the prompt's length"
    );
    assert!(stream.id >= 1, "request ids start at 1, got {}", stream.id);
}

#[rstest]
#[case::empty_prompt(0, 4, 64, false)]
#[case::one_over_max_seq_len(5, 60, 64, false)]
#[case::far_over_max_seq_len(5, 1000, 64, false)]
#[case::exactly_max_seq_len(5, 59, 64, true)]
#[tokio::test(flavor = "multi_thread")]
async fn task_1_submit_checks_the_lengths(
    #[case] prompt_tokens: usize,
    #[case] max_new_tokens: usize,
    #[case] max_seq_len: usize,
    #[case] accepted: bool,
) {
    let server = start(limits(2, 2, max_seq_len));
    let prompt = server.encode("The sea is wide, the sea is deep")[..prompt_tokens].to_vec();
    let what = format!(
        "submit of {prompt_tokens} prompt tokens + {max_new_tokens} new ones with max_seq_len {max_seq_len}"
    );
    match server.engine.submit(greedy_params(prompt, max_new_tokens)) {
        Ok(_) if accepted => {}
        Ok(_) => panic!("{what} should be SubmitError::Invalid, got Ok"),
        Err(SubmitError::Invalid(message)) if !accepted => {
            assert!(!message.is_empty(), "{what}: the Invalid message is empty");
            if prompt_tokens > 0 {
                assert!(
                    message.contains(&max_seq_len.to_string()),
                    "{what}: the message should name the limit {max_seq_len}: {message:?}"
                );
            }
        }
        Err(error) => panic!(
            "{what} should be {}, got Err({error:?})",
            if accepted {
                "Ok"
            } else {
                "SubmitError::Invalid"
            }
        ),
    }
}

#[rstest]
#[case::one_slot_no_queue(1, 0)]
#[case::one_slot_one_waiting(1, 1)]
#[case::two_slots_two_waiting(2, 2)]
#[tokio::test(flavor = "multi_thread")]
async fn task_1_submit_is_busy_beyond_max_running_plus_max_waiting(
    #[case] max_running: usize,
    #[case] max_waiting: usize,
) {
    let server = start(limits(max_running, max_waiting, 2048));
    let prompt = server.encode(LONG_PROMPT);
    let capacity = max_running + max_waiting;
    // Long requests, kept (not read): none of them finishes during the test.
    let mut streams = Vec::new();
    for admitted in 0..capacity {
        match server
            .engine
            .submit(greedy_params(prompt.clone(), LONG_TOKENS))
        {
            Ok(stream) => streams.push(stream),
            Err(error) => panic!(
                "with max_running {max_running} and max_waiting {max_waiting}, request {} of {capacity} should be admitted, got {error:?}",
                admitted + 1
            ),
        }
    }
    let ids: std::collections::BTreeSet<u64> = streams.iter().map(|stream| stream.id).collect();
    assert_eq!(
        ids.len(),
        capacity,
        "every request gets its own id: {ids:?}"
    );
    for _ in 0..2 {
        match server.engine.submit(greedy_params(prompt.clone(), 4)) {
            Err(SubmitError::Busy) => {}
            other => panic!(
                "with max_running {max_running}, max_waiting {max_waiting} and {capacity} requests in, submit should be Busy, got {:?}",
                other.map(|stream| stream.id)
            ),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Task 2: EngineLoop::token and Active::send_safe_text

#[tokio::test(flavor = "multi_thread")]
async fn task_2_greedy_text_matches_hf() {
    let server = start(roomy());
    for sequence in 0..3 {
        let reference = reference(sequence);
        let expected = server.decode(&reference.continuation);
        let new_tokens = reference.continuation.len();
        let generation = server.greedy(reference.prompt.clone(), new_tokens).await;
        let what = format!("seq{sequence} (prompt {:?})", reference.prompt);
        assert_eq!(
            generation.text(),
            expected,
            "{what}: the greedy text differs from HF's continuation {:?} decoded",
            reference.continuation
        );
        assert_eq!(generation.finish_reason, FinishReason::Length, "{what}");
        assert_eq!(
            generation.usage,
            Usage {
                prompt_tokens: reference.prompt.len(),
                completion_tokens: new_tokens,
                total_tokens: reference.prompt.len() + new_tokens,
            },
            "{what}: usage"
        );
        let timings = generation.timings;
        assert!(
            timings.time_to_first_token_ms > 0.0
                && timings.total_ms >= timings.time_to_first_token_ms
                && timings.decode_tokens_per_s > 0.0,
            "{what}: timings should be positive, total after the first token: {timings:?}"
        );
    }
}

/// Stop strings on seq1's greedy text, " - sing n jusistant\u{fffd} issit...sitex": `expected`
/// is the text before the stop string, `None` the whole text (no stop string completes).
#[rstest]
#[case::in_the_middle(&["jus"], Some(" - sing n "), FinishReason::Stop)]
#[case::the_earliest_of_two(&["sitex", "sing"], Some(" - "), FinishReason::Stop)]
#[case::at_the_very_start(&[" - s"], Some(""), FinishReason::Stop)]
#[case::several_tokens_long(&["sing n jus"], Some(" - "), FinishReason::Stop)]
#[case::its_start_ends_the_text(&["sitex and more"], None, FinishReason::Length)]
#[case::its_start_is_in_the_middle(&["sing a song"], None, FinishReason::Length)]
#[case::absent(&["zebra"], None, FinishReason::Length)]
#[tokio::test(flavor = "multi_thread")]
async fn task_2_text_stops_before_a_stop_string(
    #[case] stop: &[&str],
    #[case] expected: Option<&str>,
    #[case] finish_reason: FinishReason,
) {
    let server = start(roomy());
    let reference = reference(1);
    let whole = server.decode(&reference.continuation);
    let expected = expected.map_or(whole.clone(), String::from);
    let stream = server
        .engine
        .submit(GenerateParams {
            stop: stop.iter().map(|stop| stop.to_string()).collect(),
            ..greedy_params(reference.prompt.clone(), reference.continuation.len())
        })
        .unwrap_or_else(|error| panic!("submit: {error:?}"));
    let generation = run_to_end(stream).await;
    assert_eq!(
        generation.text(),
        expected,
        "with stop {stop:?}, greedy text {whole:?}: the chunks {:?} (text that was sent cannot be taken back)",
        generation.pieces
    );
    assert_eq!(
        generation.finish_reason, finish_reason,
        "with stop {stop:?}"
    );
    if finish_reason == FinishReason::Stop {
        assert!(
            generation.usage.completion_tokens < reference.continuation.len(),
            "with stop {stop:?}: generation should end at the token that completes it, after {} tokens",
            generation.usage.completion_tokens
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn task_2_tokens_and_latencies_are_counted() {
    let server = start(roomy());
    let metrics = server.engine.metrics();
    let mut tokens = 0;
    for sequence in [0, 1] {
        let reference = reference(sequence);
        let generation = server.greedy(reference.prompt, 16).await;
        tokens += generation.usage.completion_tokens;
    }
    assert_eq!(
        metrics.generation_tokens.get() as usize,
        tokens,
        "generation_tokens counts every generated token"
    );
    assert_eq!(
        metrics.time_to_first_token.get_sample_count(),
        2,
        "time_to_first_token observes the first token of each request"
    );
    assert_eq!(
        metrics.inter_token_latency.get_sample_count() as usize,
        tokens - 2,
        "inter_token_latency observes each token after a request's first"
    );
    assert!(
        metrics.time_to_first_token.get_sample_sum() > 0.0,
        "time_to_first_token is in seconds since the request arrived"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn task_2_a_dropped_stream_cancels_its_request() {
    let server = start(limits(1, 0, 2048));
    let prompt = server.encode(LONG_PROMPT);
    let mut stream = server
        .engine
        .submit(greedy_params(prompt.clone(), LONG_TOKENS))
        .unwrap_or_else(|error| panic!("submit: {error:?}"));
    let first = within("the first chunk", stream.chunks.recv()).await;
    assert!(
        matches!(first, Some(Chunk::Text(_))),
        "the first chunk of a long request should be text, got {first:?}"
    );
    drop(stream);
    // The only place is free again once the engine notices and cancels the request.
    let deadline = Instant::now() + Duration::from_secs(10);
    let next = loop {
        match server.engine.submit(greedy_params(prompt.clone(), 4)) {
            Ok(stream) => break stream,
            Err(SubmitError::Busy) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            Err(error) => panic!(
                "10 s after its client dropped the stream of a {LONG_TOKENS}-token request, the only place should be free again: {error:?}"
            ),
        }
    };
    let generated = server.engine.metrics().generation_tokens.get() as usize;
    assert!(
        generated < LONG_TOKENS,
        "the dropped request should have been cancelled, not run to its {LONG_TOKENS} tokens ({generated} generated)"
    );
    let generation = run_to_end(next).await;
    assert_eq!(
        generation.usage.completion_tokens, 4,
        "the next request runs"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn task_2_generate_stream_sends_ndjson_lines_then_done() {
    let server = start(roomy());
    let reference = reference(1);
    let prompt = prompt_text(&server, &reference);
    let response = server
        .post(
            "/generate/stream",
            &json!({"prompt": prompt, "max_new_tokens": 16}),
        )
        .await;
    assert_eq!(response.status(), StatusCode::OK, "POST /generate/stream");
    let body = body_text(response).await;
    let lines: Vec<Value> = body
        .lines()
        .map(|line| {
            serde_json::from_str(line)
                .unwrap_or_else(|error| panic!("each line is JSON ({error}): {line:?}"))
        })
        .collect();
    let (done, texts) = lines.split_last().expect("at least the done line");
    let text: String = texts
        .iter()
        .map(|line| {
            line["text"]
                .as_str()
                .unwrap_or_else(|| panic!("a line before the last is {{\"text\": ...}}: {line}"))
        })
        .collect();
    assert_eq!(
        text,
        server.decode(&reference.continuation),
        "the streamed text (greedy by default) should be HF's continuation"
    );
    assert_eq!(done["done"], true, "the last line: {done}");
    assert_eq!(done["finish_reason"], "length", "the last line: {done}");
    assert_eq!(
        done["stats"]["generated_tokens"], 16,
        "the last line: {done}"
    );
    assert_eq!(
        done["stats"]["prompt_tokens"],
        reference.prompt.len(),
        "the last line: {done}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn task_2_metrics_endpoint_counts_requests_and_tokens() {
    let server = start(roomy());
    let before = server.metrics().await;
    for name in [
        "tiny_llm_requests_running",
        "tiny_llm_requests_waiting",
        "tiny_llm_kv_cache_bytes",
        "tiny_llm_generation_tokens_total",
        "tiny_llm_prompt_tokens_total",
    ] {
        gauge(&before, name);
    }
    let prompt = server.encode("The sea is wide,");
    for max_new_tokens in [3, 5] {
        let response = server
            .post(
                "/generate/stream",
                &json!({"prompt": "The sea is wide,", "max_new_tokens": max_new_tokens}),
            )
            .await;
        assert_eq!(response.status(), StatusCode::OK, "POST /generate/stream");
        body_text(response).await;
    }
    let after = server.metrics().await;
    let requests = sample(
        &after,
        "tiny_llm_requests_total",
        &["endpoint=\"/generate/stream\"", "status=\"200\""],
    );
    assert_eq!(
        requests,
        Some(2.0),
        "tiny_llm_requests_total{{endpoint=\"/generate/stream\",status=\"200\"}} after two requests:\n{after}"
    );
    assert_eq!(
        gauge(&after, "tiny_llm_generation_tokens_total"),
        8.0,
        "tokens generated by two requests of 3 and 5 tokens:\n{after}"
    );
    assert_eq!(
        gauge(&after, "tiny_llm_prompt_tokens_total"),
        2.0 * prompt.len() as f64,
        "prompt tokens of the two requests:\n{after}"
    );
    assert_eq!(
        sample(&after, "tiny_llm_time_to_first_token_seconds_count", &[]),
        Some(2.0),
        "one first token per request:\n{after}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn task_2_a_client_that_disconnects_frees_its_slot() {
    let server = start(limits(1, 0, 2048));
    let response = server
        .post(
            "/generate/stream",
            &json!({"prompt": LONG_PROMPT, "max_new_tokens": LONG_TOKENS}),
        )
        .await;
    assert_eq!(response.status(), StatusCode::OK, "POST /generate/stream");
    let mut body = response.into_body();
    let first = next_piece(&mut body).await;
    assert!(first.is_some(), "the stream ended before its first line");
    drop(body);
    // The engine notices at its next token, cancels the request and frees its cache.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let metrics = server.metrics().await;
        let (running, cache) = (
            gauge(&metrics, "tiny_llm_requests_running"),
            gauge(&metrics, "tiny_llm_kv_cache_bytes"),
        );
        if running == 0.0 && cache == 0.0 {
            let generated = gauge(&metrics, "tiny_llm_generation_tokens_total");
            assert!(
                generated < LONG_TOKENS as f64,
                "the request should have been cancelled when its client left, not run to its {LONG_TOKENS} tokens ({generated} generated)"
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "10 s after the client disconnected, /metrics still shows {running} running and {cache} bytes of KV cache"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let response = server
        .post(
            "/generate/stream",
            &json!({"prompt": "The sea is wide,", "max_new_tokens": 3}),
        )
        .await;
    assert_eq!(
        response.status(),
        StatusCode::OK,
        "the only slot is free again: a new request runs"
    );
    body_text(response).await;
}

// ---------------------------------------------------------------------------------------------
// Task 3: collect and completions

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
            "total_tokens": reference.prompt.len() + 16}),
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

// ---------------------------------------------------------------------------------------------
// Task 4: openai_stream and sse

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

// ---------------------------------------------------------------------------------------------
// Task 5: ApiError::into_response

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
