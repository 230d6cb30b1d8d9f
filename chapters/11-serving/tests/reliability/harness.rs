//! What the groups of tests share: the engine and router of a test server, requests to it, and the
//! check of OpenAI's error shape.

use axum::{
    body::Body,
    http::{header, Request, StatusCode},
    response::Response,
    Router,
};
use http_body_util::BodyExt;
use serde_json::{json, Value};
use serving::{
    protect, router, AppState, ContextPolicy, EngineHandle, EngineLimits, Model, SchedulerConfig,
    ServerOptions, Tokenizer,
};
use std::{future::Future, sync::Arc, time::Duration};
use test_support::fixture_path;
use tower::ServiceExt;

pub const MODEL: &str = "llama-tiny";
const PATIENCE: Duration = Duration::from_secs(60);

pub fn limits(max_running: usize, max_seq_len: usize) -> EngineLimits {
    EngineLimits {
        scheduler: SchedulerConfig {
            max_running,
            token_budget: 64,
            prefill_chunk: 16,
        },
        max_waiting: 8,
        max_seq_len,
        context_policy: ContextPolicy::Reject,
    }
}

pub struct TestServer {
    pub engine: EngineHandle,
    pub app: Router,
}

pub fn start_with(limits: EngineLimits, options: &ServerOptions) -> TestServer {
    let dir = fixture_path(MODEL);
    let tokenizer = || {
        Tokenizer::load(&fixture_path(MODEL))
            .unwrap_or_else(|error| panic!("Tokenizer::load({MODEL}): {error}"))
    };
    let engine = EngineHandle::start(move || Model::load(&dir), tokenizer(), limits)
        .unwrap_or_else(|error| panic!("EngineHandle::start on {MODEL}: {error}"));
    let app = protect(
        router(AppState {
            engine: engine.clone(),
            tokenizer: Arc::new(tokenizer()),
            model_name: MODEL.into(),
            formats: None,
            chat_template: None,
        }),
        options,
    );
    TestServer { engine, app }
}

pub fn start() -> TestServer {
    start_with(limits(4, 2048), &ServerOptions::default())
}

pub async fn within<T>(what: &str, future: impl Future<Output = T>) -> T {
    tokio::time::timeout(PATIENCE, future)
        .await
        .unwrap_or_else(|_| panic!("{what} took more than {PATIENCE:?}"))
}

async fn body_text(response: Response) -> String {
    let bytes = within("reading a response body", response.into_body().collect())
        .await
        .unwrap_or_else(|error| panic!("reading a response body: {error}"))
        .to_bytes();
    String::from_utf8_lossy(&bytes).into_owned()
}

impl TestServer {
    pub async fn send(&self, request: Request<Body>) -> Response {
        let what = format!("{} {}", request.method(), request.uri());
        match within(&what, self.app.clone().oneshot(request)).await {
            Ok(response) => response,
            Err(never) => match never {},
        }
    }

    pub async fn post_bytes(&self, path: &str, body: impl Into<Body>) -> Response {
        let request = Request::post(path)
            .header(header::CONTENT_TYPE, "application/json")
            .body(body.into())
            .expect("a valid request");
        self.send(request).await
    }

    /// The status and JSON body of an answer.
    pub async fn answer(&self, response: Response) -> (StatusCode, Value) {
        let status = response.status();
        let text = body_text(response).await;
        let value = serde_json::from_str(&text).unwrap_or_else(|error| {
            panic!("answered {status} with a body that is not JSON ({error}): {text:?}")
        });
        (status, value)
    }

    pub async fn post_json(&self, path: &str, body: &Value) -> (StatusCode, Value) {
        let response = self.post_bytes(path, body.to_string()).await;
        self.answer(response).await
    }

    /// A short greedy completion must still succeed: the bad request before it broke nothing.
    pub async fn assert_still_serves(&self, after: &str) {
        let (status, body) = self
            .post_json(
                "/v1/completions",
                &json!({"prompt": "The sea is", "max_tokens": 3, "temperature": 0}),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "after {after}: {body}");
        assert_eq!(
            body["usage"]["completion_tokens"], 3,
            "after {after}: {body}"
        );
    }
}

/// Checks OpenAI's error shape, `{"error": {"message", "type", "param", "code"}}`, the status,
/// and that the message names every one of `names`.
pub fn assert_error(
    what: &str,
    (status, body): (StatusCode, Value),
    expected: StatusCode,
    names: &[&str],
) {
    assert_eq!(status, expected, "{what}: answered {body}");
    let error = &body["error"];
    let message = error["message"]
        .as_str()
        .unwrap_or_else(|| panic!("{what}: not {{\"error\": {{\"message\": ...}}}}: {body}"));
    assert!(
        error["type"].is_string() && error.get("param").is_some() && error.get("code").is_some(),
        "{what}: the error lacks type, param or code: {body}"
    );
    for name in names {
        assert!(
            message.contains(name),
            "{what}: the message should name {name:?}: {message:?}"
        );
    }
}
