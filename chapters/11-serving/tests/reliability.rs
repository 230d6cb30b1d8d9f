//! The server under hostile input, slow or vanishing clients and shutdown: every bad request is a
//! 4xx in OpenAI's error shape naming the problem, and the server keeps serving afterwards.
//!
//! These test given code (the guards, the listener, the request checks), so they live beside the
//! solution rather than in the chapter's tests, which must fail on the stubs; `cargo xtask
//! check-solutions` runs them with the platform tests. The model is the tiny Llama of
//! `models/fixtures/llama-tiny`; requests go to the router in-process, or over loopback TCP to
//! [`serve`] where the connection itself is under test.

use axum::{
    body::Body,
    http::{header, Request, StatusCode},
    response::Response,
    Router,
};
use futures_util::stream;
use http_body_util::BodyExt;
use serde_json::{json, Value};
use serving::{
    check_exposure, protect, router, serve, AppState, ContextPolicy, EngineHandle, EngineLimits,
    HeaderValue, Model, SchedulerConfig, ServerOptions, Shutdown, Tokenizer,
};
use std::{
    future::Future,
    io,
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
    sync::Arc,
    time::{Duration, Instant},
};
use test_support::fixture_path;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
    sync::oneshot,
    task::JoinHandle,
};
use tower::ServiceExt;

const MODEL: &str = "llama-tiny";
const PATIENCE: Duration = Duration::from_secs(60);
/// The tiny model's greedy continuation of "The" meets no EOS in its first 1500 tokens: a
/// request that runs for seconds.
const LONG_PROMPT: &str = "The";
const LONG_TOKENS: usize = 1000;
const KEY: &str = "sk-test-0123456789";

fn limits(max_running: usize, max_seq_len: usize) -> EngineLimits {
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

struct TestServer {
    engine: EngineHandle,
    app: Router,
}

fn start_with(limits: EngineLimits, options: &ServerOptions) -> TestServer {
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
        }),
        options,
    );
    TestServer { engine, app }
}

fn start() -> TestServer {
    start_with(limits(4, 2048), &ServerOptions::default())
}

async fn within<T>(what: &str, future: impl Future<Output = T>) -> T {
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
    async fn send(&self, request: Request<Body>) -> Response {
        let what = format!("{} {}", request.method(), request.uri());
        match within(&what, self.app.clone().oneshot(request)).await {
            Ok(response) => response,
            Err(never) => match never {},
        }
    }

    async fn post_bytes(&self, path: &str, body: impl Into<Body>) -> Response {
        let request = Request::post(path)
            .header(header::CONTENT_TYPE, "application/json")
            .body(body.into())
            .expect("a valid request");
        self.send(request).await
    }

    /// The status and JSON body of an answer.
    async fn answer(&self, response: Response) -> (StatusCode, Value) {
        let status = response.status();
        let text = body_text(response).await;
        let value = serde_json::from_str(&text).unwrap_or_else(|error| {
            panic!("answered {status} with a body that is not JSON ({error}): {text:?}")
        });
        (status, value)
    }

    async fn post_json(&self, path: &str, body: &Value) -> (StatusCode, Value) {
        let response = self.post_bytes(path, body.to_string()).await;
        self.answer(response).await
    }

    /// A short greedy completion must still succeed: the bad request before it broke nothing.
    async fn assert_still_serves(&self, after: &str) {
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
fn assert_error(
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

// ---------------------------------------------------------------------------------------------
// Bad requests, each a 4xx naming the problem; the server serves the next request.

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
            chat(json!([{"role": "tool", "content": "42"}])),
            bad,
            vec!["messages[0]", "\"tool\"", "user"],
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

// ---------------------------------------------------------------------------------------------
// The API key and CORS.

fn with_key() -> ServerOptions {
    ServerOptions {
        api_key: Some(KEY.into()),
        ..ServerOptions::default()
    }
}

fn completion_request(authorization: Option<&str>) -> Request<Body> {
    let mut request =
        Request::post("/v1/completions").header(header::CONTENT_TYPE, "application/json");
    if let Some(value) = authorization {
        request = request.header(header::AUTHORIZATION, value);
    }
    request
        .body(Body::from(
            json!({"prompt": "The", "max_tokens": 2}).to_string(),
        ))
        .expect("a valid request")
}

#[tokio::test(flavor = "multi_thread")]
async fn an_api_key_is_required_except_for_health() {
    let server = start_with(limits(4, 2048), &with_key());
    for (what, authorization) in [
        ("no Authorization header", None),
        ("a wrong key", Some("Bearer sk-wrong")),
        ("the key without Bearer", Some(KEY)),
        (
            "a longer key with the right start",
            Some(&*format!("Bearer {KEY}x")),
        ),
    ] {
        let response = server.send(completion_request(authorization)).await;
        assert_eq!(
            response
                .headers()
                .get(header::WWW_AUTHENTICATE)
                .map(|value| value.as_bytes()),
            Some(&b"Bearer"[..]),
            "{what}: a 401 says which scheme"
        );
        let (status, body) = server.answer(response).await;
        assert_error(
            what,
            (status, body.clone()),
            StatusCode::UNAUTHORIZED,
            &["API key"],
        );
        assert_eq!(body["error"]["code"], "invalid_api_key", "{what}: {body}");
    }
    let metrics = Request::get("/metrics")
        .body(Body::empty())
        .expect("a valid request");
    assert_eq!(
        server.send(metrics).await.status(),
        StatusCode::UNAUTHORIZED,
        "GET /metrics without the key"
    );
    let health = Request::get("/health")
        .body(Body::empty())
        .expect("a valid request");
    assert_eq!(
        server.send(health).await.status(),
        StatusCode::OK,
        "GET /health stays open"
    );
    let (status, body) = server
        .answer(
            server
                .send(completion_request(Some(&format!("Bearer {KEY}"))))
                .await,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "with the key: {body}");
}

fn preflight() -> Request<Body> {
    Request::builder()
        .method("OPTIONS")
        .uri("/v1/completions")
        .header(header::ORIGIN, "http://localhost:3000")
        .header(header::ACCESS_CONTROL_REQUEST_METHOD, "POST")
        .header(
            header::ACCESS_CONTROL_REQUEST_HEADERS,
            "authorization,content-type",
        )
        .body(Body::empty())
        .expect("a valid request")
}

#[tokio::test(flavor = "multi_thread")]
async fn cors_is_off_unless_an_origin_is_given() {
    let server = start();
    let response = server.send(preflight()).await;
    assert!(
        response
            .headers()
            .get(header::ACCESS_CONTROL_ALLOW_ORIGIN)
            .is_none(),
        "without --cors-origin a preflight gets no Access-Control-Allow-Origin: {:?}",
        response.headers()
    );

    let options = ServerOptions {
        cors_origin: Some(HeaderValue::from_static("http://localhost:3000")),
        ..with_key()
    };
    let server = start_with(limits(4, 2048), &options);
    // A preflight carries no key: it is answered before the key is checked.
    let response = server.send(preflight()).await;
    assert!(
        response.status().is_success(),
        "the preflight answered {}",
        response.status()
    );
    assert_eq!(
        response.headers().get(header::ACCESS_CONTROL_ALLOW_ORIGIN),
        Some(&HeaderValue::from_static("http://localhost:3000")),
        "{:?}",
        response.headers()
    );
    // Another origin gets the same answer, which names only the allowed origin (never `*` or an
    // echo of the caller): the browser then refuses the call.
    let mut other = preflight();
    other.headers_mut().insert(
        header::ORIGIN,
        HeaderValue::from_static("http://evil.example"),
    );
    let response = server.send(other).await;
    assert_eq!(
        response.headers().get(header::ACCESS_CONTROL_ALLOW_ORIGIN),
        Some(&HeaderValue::from_static("http://localhost:3000")),
        "{:?}",
        response.headers()
    );
}

#[test]
fn only_loopback_may_go_without_an_api_key() {
    let any = IpAddr::V4(Ipv4Addr::UNSPECIFIED);
    let message = check_exposure(any, false, false).expect_err("0.0.0.0 without a key is refused");
    for name in [
        "0.0.0.0",
        "--api-key",
        "TINY_LLM_API_KEY",
        "--insecure-no-auth",
    ] {
        assert!(
            message.contains(name),
            "the refusal should name {name}: {message}"
        );
    }
    assert!(!message.contains('\n'), "one line: {message}");
    assert!(check_exposure(IpAddr::V4(Ipv4Addr::new(192, 168, 1, 5)), false, false).is_err());
    assert!(check_exposure(IpAddr::V6(Ipv6Addr::UNSPECIFIED), false, false).is_err());
    assert_eq!(
        check_exposure(IpAddr::V4(Ipv4Addr::LOCALHOST), false, false),
        Ok(())
    );
    assert_eq!(
        check_exposure(IpAddr::V6(Ipv6Addr::LOCALHOST), false, false),
        Ok(())
    );
    assert_eq!(check_exposure(any, true, false), Ok(()));
    assert_eq!(check_exposure(any, false, true), Ok(()));
}

// ---------------------------------------------------------------------------------------------
// Over TCP: slow clients, vanishing clients, shutdown.

struct LiveServer {
    address: SocketAddr,
    engine: EngineHandle,
    stop: Option<oneshot::Sender<()>>,
    served: JoinHandle<io::Result<Shutdown>>,
}

async fn live(limits: EngineLimits, options: ServerOptions) -> LiveServer {
    let TestServer { engine, app } = start_with(limits, &options);
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .await
        .expect("a loopback port");
    let address = listener.local_addr().expect("the port's address");
    let (stop, stopped) = oneshot::channel::<()>();
    let served = tokio::spawn(async move {
        serve(listener, app, &options, async {
            let _ = stopped.await;
        })
        .await
    });
    LiveServer {
        address,
        engine,
        stop: Some(stop),
        served,
    }
}

/// An HTTP/1.1 request that closes its connection after the answer.
fn http_request(path: &str, body: &Value) -> Vec<u8> {
    let body = body.to_string();
    format!(
        "POST {path} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// Sends `request` and reads the whole answer (the server closes the connection after it).
async fn exchange(address: SocketAddr, request: &[u8]) -> String {
    let mut stream = TcpStream::connect(address)
        .await
        .expect("connect to the server");
    stream.write_all(request).await.expect("send the request");
    let mut answer = Vec::new();
    within("reading an answer", stream.read_to_end(&mut answer))
        .await
        .expect("read the answer");
    String::from_utf8_lossy(&answer).into_owned()
}

fn status_line(answer: &str) -> &str {
    answer.lines().next().unwrap_or("")
}

impl LiveServer {
    /// A short completion over a fresh connection succeeds, and quickly.
    async fn assert_serves(&self, during: &str) {
        let started = Instant::now();
        let answer = exchange(
            self.address,
            &http_request(
                "/v1/completions",
                &json!({"prompt": "The sea is", "max_tokens": 3, "temperature": 0}),
            ),
        )
        .await;
        assert!(
            status_line(&answer).contains("200"),
            "during {during}: {answer}"
        );
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "during {during} a short request took {:?}",
            started.elapsed()
        );
    }

    /// Waits until the engine runs nothing and holds no cache.
    async fn assert_idle_soon(&self, after: &str) {
        let deadline = Instant::now() + Duration::from_secs(10);
        let metrics = self.engine.metrics();
        while metrics.running.get() != 0 || metrics.kv_cache_bytes.get() != 0 {
            assert!(
                Instant::now() < deadline,
                "10 s after {after}, {} requests still run and {} bytes of KV cache are held",
                metrics.running.get(),
                metrics.kv_cache_bytes.get()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn stop(&mut self) {
        let _ = self.stop.take().expect("stopped once").send(());
    }
}

/// Opens a long streamed completion and waits for its first bytes.
async fn open_long_stream(address: SocketAddr) -> TcpStream {
    let mut stream = TcpStream::connect(address)
        .await
        .expect("connect to the server");
    let body =
        json!({"prompt": LONG_PROMPT, "max_tokens": LONG_TOKENS, "temperature": 0, "stream": true});
    stream
        .write_all(&http_request("/v1/completions", &body))
        .await
        .expect("send the request");
    let mut first = [0u8; 256];
    let read = within("the stream's first bytes", stream.read(&mut first))
        .await
        .expect("read the stream");
    assert!(
        String::from_utf8_lossy(&first[..read]).starts_with("HTTP/1.1 200"),
        "the long stream should start with 200: {:?}",
        String::from_utf8_lossy(&first[..read])
    );
    stream
}

#[tokio::test(flavor = "multi_thread")]
async fn slow_header_and_body_senders_are_cut_off_without_stalling_others() {
    let options = ServerOptions {
        read_timeout: Duration::from_secs(1),
        ..ServerOptions::default()
    };
    let server = live(limits(4, 2048), options).await;

    // Half a request head, then nothing: hyper closes the connection after the read timeout.
    let mut slow_head = TcpStream::connect(server.address).await.expect("connect");
    slow_head
        .write_all(b"POST /v1/completions HTTP/1.1\r\nHost: localhost\r\n")
        .await
        .expect("send half a head");
    // A whole head, then 10 of the 100 body bytes it announced.
    let mut slow_body = TcpStream::connect(server.address).await.expect("connect");
    slow_body
        .write_all(b"POST /v1/completions HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"prompt\":")
        .await
        .expect("send part of a body");

    server.assert_serves("two slow senders").await;

    let started = Instant::now();
    let mut answer = Vec::new();
    let _ = within(
        "the slow head's connection closing",
        slow_head.read_to_end(&mut answer),
    )
    .await;
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "the slow head held its connection for {:?}",
        started.elapsed()
    );
    let mut answer = Vec::new();
    let _ = within("the slow body's answer", slow_body.read_to_end(&mut answer)).await;
    let answer = String::from_utf8_lossy(&answer);
    assert!(
        status_line(&answer).contains("408"),
        "a body that stalls gets 408: {answer}"
    );
    assert!(
        answer.contains("--read-timeout-secs"),
        "the 408 names the flag: {answer}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_request_head_over_the_limit_is_refused() {
    let server = live(limits(4, 2048), ServerOptions::default()).await;
    let huge = "x".repeat(100 << 10);
    let request = format!(
        "GET /health HTTP/1.1\r\nHost: localhost\r\nX-Padding: {huge}\r\nConnection: close\r\n\r\n"
    );
    // hyper answers 431 and closes with the rest of the head unread, so the kernel may reset the
    // connection before the answer is read: either way the head must not be served.
    let mut stream = TcpStream::connect(server.address).await.expect("connect");
    let _ = stream.write_all(request.as_bytes()).await;
    let mut answer = Vec::new();
    let _ = within("the answer to a huge head", stream.read_to_end(&mut answer)).await;
    let answer = String::from_utf8_lossy(&answer);
    assert!(
        answer.is_empty() || status_line(&answer).contains("431"),
        "a 100 KB header is refused: {:.200}",
        answer
    );
    server.assert_serves("after a huge header").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_slow_reader_does_not_stall_others_and_a_disconnect_frees_its_slot() {
    let server = live(limits(4, 2048), ServerOptions::default()).await;
    // Reads its first bytes, then nothing: the engine keeps generating for it meanwhile.
    let slow_reader = open_long_stream(server.address).await;
    server.assert_serves("a client that stopped reading").await;
    drop(slow_reader);
    server
        .assert_idle_soon("the client disconnected mid-stream")
        .await;
    let generated = server.engine.metrics().generation_tokens.get();
    assert!(
        generated < (LONG_TOKENS + 3) as u64,
        "the abandoned request should have been cancelled, not run to its {LONG_TOKENS} tokens ({generated} generated)"
    );
    server.assert_serves("after the disconnect").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn shutdown_lets_requests_in_flight_finish_and_refuses_new_ones() {
    let mut server = live(limits(4, 2048), ServerOptions::default()).await;
    let mut stream = TcpStream::connect(server.address).await.expect("connect");
    let body = json!({"prompt": LONG_PROMPT, "max_tokens": 40, "temperature": 0, "stream": true});
    stream
        .write_all(&http_request("/v1/completions", &body))
        .await
        .expect("send");
    let mut first = [0u8; 64];
    within("the first bytes", stream.read(&mut first))
        .await
        .expect("read");

    server.stop();
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(server.address).await.is_ok() {
        assert!(
            Instant::now() < deadline,
            "10 s after the shutdown signal the server still accepts connections"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut rest = Vec::new();
    within("the rest of the stream", stream.read_to_end(&mut rest))
        .await
        .expect("read");
    let rest = String::from_utf8_lossy(&rest);
    assert!(
        rest.contains("data: [DONE]"),
        "the request in flight runs to its end: {rest}"
    );
    let ended = within("serve returning", &mut server.served)
        .await
        .expect("the server task")
        .expect("serve");
    assert_eq!(ended, Shutdown::Drained);
}

#[tokio::test(flavor = "multi_thread")]
async fn shutdown_cancels_what_outlives_the_grace_period() {
    let options = ServerOptions {
        shutdown_grace: Duration::from_millis(300),
        ..ServerOptions::default()
    };
    let mut server = live(limits(4, 2048), options).await;
    let _stream = open_long_stream(server.address).await;
    let started = Instant::now();
    server.stop();
    let ended = within("serve returning", &mut server.served)
        .await
        .expect("the server task")
        .expect("serve");
    assert_eq!(ended, Shutdown::Cancelled { connections: 1 });
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "serve should return soon after the 300 ms grace, took {:?}",
        started.elapsed()
    );
    server
        .assert_idle_soon("the shutdown cancelled the long request")
        .await;
}
