//! What the tasks' tests share: the engine and router of a test server, requests to it, and
//! HF transformers' references.

use axum::{
    body::Body,
    http::{header, Request, StatusCode},
    response::Response,
    Router,
};
use http_body_util::BodyExt;
use serde_json::Value;
use serving::{
    router, AppState, ChatTemplate, Chunk, ContextPolicy, EngineHandle, EngineLimits, FinishReason,
    FormatCompiler, GenerateParams, Model, RequestStream, SamplingParams, SchedulerConfig, Timings,
    Tokenizer, Usage,
};
use std::{future::Future, path::PathBuf, sync::Arc, time::Duration};
use test_support::{fixture_path, load_fixture};
use tower::ServiceExt;

pub const MODEL: &str = "llama-tiny";

/// The longest any single await may take: the tiny model makes ~300 tokens/s even unoptimized.
const PATIENCE: Duration = Duration::from_secs(60);

/// A request that runs for seconds: the tiny model's greedy continuation of "The" meets no EOS
/// in its first 1500 tokens.
pub const LONG_PROMPT: &str = "The";
pub const LONG_TOKENS: usize = 1000;

pub fn limits(max_running: usize, max_waiting: usize, max_seq_len: usize) -> EngineLimits {
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

pub fn roomy() -> EngineLimits {
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
pub struct TestServer {
    pub engine: EngineHandle,
    pub tokenizer: Arc<Tokenizer>,
    pub app: Router,
}

pub fn start(limits: EngineLimits) -> TestServer {
    start_with_formats(limits, None)
}

/// [`start`] with a compiler of `response_format`s and tools' answers.
pub fn start_with_formats(limits: EngineLimits, formats: Option<FormatCompiler>) -> TestServer {
    start_with_template(limits, formats, None)
}

/// [`start_with_formats`] with a chat template rendered directly for chats with tools.
pub fn start_with_template(
    limits: EngineLimits,
    formats: Option<FormatCompiler>,
    chat_template: Option<ChatTemplate>,
) -> TestServer {
    let dir = model_dir();
    let engine = EngineHandle::start(move || Model::load(&dir), load_tokenizer(), limits)
        .unwrap_or_else(|error| panic!("EngineHandle::start on {MODEL}: {error}"));
    let tokenizer = Arc::new(load_tokenizer());
    let app = router(AppState {
        engine: engine.clone(),
        tokenizer: Arc::clone(&tokenizer),
        model_name: MODEL.into(),
        formats,
        chat_template: chat_template.map(Arc::new),
    });
    TestServer {
        engine,
        tokenizer,
        app,
    }
}

pub async fn within<T>(what: &str, future: impl Future<Output = T>) -> T {
    tokio::time::timeout(PATIENCE, future)
        .await
        .unwrap_or_else(|_| panic!("{what} took more than {PATIENCE:?}"))
}

impl TestServer {
    pub fn encode(&self, text: &str) -> Vec<u32> {
        self.tokenizer
            .encode(text)
            .unwrap_or_else(|error| panic!("encode({text:?}): {error}"))
    }

    pub fn decode(&self, tokens: &[u32]) -> String {
        self.tokenizer
            .decode(tokens)
            .unwrap_or_else(|error| panic!("decode({tokens:?}): {error}"))
    }

    pub async fn send(&self, request: Request<Body>) -> Response {
        let what = format!("{} {}", request.method(), request.uri());
        match within(&what, self.app.clone().oneshot(request)).await {
            Ok(response) => response,
            Err(never) => match never {},
        }
    }

    pub async fn get(&self, path: &str) -> Response {
        let request = Request::get(path)
            .body(Body::empty())
            .expect("a valid request");
        self.send(request).await
    }

    /// POSTs `body` as it is, labelled JSON.
    pub async fn post_text(&self, path: &str, body: &str) -> Response {
        let request = Request::post(path)
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(body.to_string()))
            .expect("a valid request");
        self.send(request).await
    }

    pub async fn post(&self, path: &str, body: &Value) -> Response {
        self.post_text(path, &body.to_string()).await
    }

    /// POSTs `body` and reads the whole answer as JSON.
    pub async fn post_json(&self, path: &str, body: &Value) -> (StatusCode, Value) {
        let response = self.post(path, body).await;
        let status = response.status();
        let text = body_text(response).await;
        let value = serde_json::from_str(&text).unwrap_or_else(|error| {
            panic!("POST {path} {body} answered {status} with a body that is not JSON ({error}): {text:?}")
        });
        (status, value)
    }

    /// POSTs `body`, expects 200 and its JSON.
    pub async fn post_ok(&self, path: &str, body: &Value) -> Value {
        let (status, value) = self.post_json(path, body).await;
        assert_eq!(
            status,
            StatusCode::OK,
            "POST {path} {body} answered {value}"
        );
        value
    }

    pub async fn metrics(&self) -> String {
        let response = self.get("/metrics").await;
        assert_eq!(response.status(), StatusCode::OK, "GET /metrics");
        body_text(response).await
    }

    /// Greedy generation through the engine alone (no HTTP), for the handlers to match.
    pub async fn greedy(&self, prompt_tokens: Vec<u32>, max_new_tokens: usize) -> Generation {
        let stream = self
            .engine
            .submit(GenerateParams {
                prompt_tokens,
                max_new_tokens,
                sampling: SamplingParams::default(),
                stop: Vec::new(),
                constraint: None,
                logprobs: None,
            })
            .unwrap_or_else(|error| panic!("submit: {error:?}"));
        run_to_end(stream).await
    }
}

pub async fn body_text(response: Response) -> String {
    let bytes = within("reading a response body", response.into_body().collect())
        .await
        .unwrap_or_else(|error| panic!("reading a response body: {error}"))
        .to_bytes();
    String::from_utf8(bytes.to_vec()).expect("a UTF-8 body")
}

/// What a request's stream carried, up to its `Done`.
#[derive(Debug)]
pub struct Generation {
    pub pieces: Vec<String>,
    pub finish_reason: FinishReason,
    pub usage: Usage,
    pub timings: Timings,
}

impl Generation {
    pub fn text(&self) -> String {
        self.pieces.concat()
    }
}

pub async fn run_to_end(mut stream: RequestStream) -> Generation {
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
            Some(Chunk::Logprobs(tokens)) => {
                panic!("request {id} asked for no logprobs, yet got {tokens:?}")
            }
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
pub struct Reference {
    pub prompt: Vec<u32>,
    pub continuation: Vec<u32>,
}

pub fn reference(sequence: usize) -> Reference {
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
pub fn prompt_text(server: &TestServer, reference: &Reference) -> String {
    let text = server.decode(&reference.prompt);
    assert_eq!(
        server.encode(&text),
        reference.prompt,
        "the reference prompt {text:?} does not encode back to its tokens"
    );
    text
}

pub fn greedy_params(prompt_tokens: Vec<u32>, max_new_tokens: usize) -> GenerateParams {
    GenerateParams {
        prompt_tokens,
        max_new_tokens,
        sampling: SamplingParams::default(),
        stop: Vec::new(),
        constraint: None,
        logprobs: None,
    }
}
