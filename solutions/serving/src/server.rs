//! The HTTP API: OpenAI-compatible completions and chat completions (whole or streamed as
//! server-sent events), the engine's native `/generate`, and `/v1/models`, `/health`, `/metrics`.

use crate::{
    ChatCompletionRequest, ChatMessage, Chunk, CompletionRequest, EngineHandle, ErrorBody,
    ErrorDetail, GenerateParams, GenerateRequest, GenerationStats, RequestStream, SubmitError,
    Timings, Usage,
};
use axum::{
    body::Body,
    extract::{rejection::JsonRejection, MatchedPath, Request, State},
    http::{header, StatusCode},
    middleware::{self, Next},
    response::{
        sse::{Event, KeepAlive, Sse},
        IntoResponse, Response,
    },
    routing::{get, post},
    Json, Router,
};
use continuous_batching::FinishReason;
use decode::{ContextPlan, Message, Tokenizer};
use futures_util::stream::{self, Stream, StreamExt};
use kv_cache::STEP;
use serde_json::{json, Value};
use std::{
    convert::Infallible,
    sync::Arc,
    time::{SystemTime, UNIX_EPOCH},
};

/// What every handler shares.
#[derive(Clone)]
pub struct AppState {
    pub engine: EngineHandle,
    pub tokenizer: Arc<Tokenizer>,
    /// The name `/v1/models` lists and requests must use.
    pub model_name: String,
}

/// Every route of the server.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/v1/completions", post(completions))
        .route("/v1/chat/completions", post(chat_completions))
        .route("/v1/models", get(models))
        .route("/generate", post(generate))
        .route("/generate/stream", post(generate_stream))
        .route("/health", get(health))
        .route("/metrics", get(metrics))
        .fallback(not_found)
        .layer(middleware::from_fn_with_state(
            state.clone(),
            count_requests,
        ))
        .with_state(state)
}

/// Counts every answered request by endpoint and status, for `/metrics`.
async fn count_requests(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let endpoint = request
        .extensions()
        .get::<MatchedPath>()
        .map_or("unknown", MatchedPath::as_str)
        .to_string();
    let response = next.run(request).await;
    state
        .engine
        .metrics()
        .requests
        .with_label_values(&[endpoint.as_str(), response.status().as_str()])
        .inc();
    response
}

/// An error answered in OpenAI's shape: `{"error": {"message", "type", "param", "code"}}`.
pub struct ApiError {
    status: StatusCode,
    message: String,
    code: Option<&'static str>,
}

impl ApiError {
    pub(crate) fn new(
        status: StatusCode,
        message: impl Into<String>,
        code: Option<&'static str>,
    ) -> Self {
        ApiError {
            status,
            message: message.into(),
            code,
        }
    }

    fn invalid(message: impl Into<String>) -> Self {
        ApiError {
            status: StatusCode::BAD_REQUEST,
            message: message.into(),
            code: None,
        }
    }
}

impl IntoResponse for ApiError {
    /// The status, with the body `{"error": {"message", "type", "param": null, "code"}}`:
    /// `type` is `"server_overloaded"` for 503, `"server_error"` for another 5xx,
    /// `"not_found_error"` for 404 and `"invalid_request_error"` otherwise (build it from
    /// [`ErrorBody`]). A 503 also carries `Retry-After: 1` (seconds), which OpenAI's clients wait
    /// before they retry.
    ///
    /// Book: week 2, chapter 11 (serving), task 5.
    fn into_response(self) -> Response {
        let kind = match self.status {
            StatusCode::SERVICE_UNAVAILABLE => "server_overloaded",
            status if status.is_server_error() => "server_error",
            StatusCode::NOT_FOUND => "not_found_error",
            _ => "invalid_request_error",
        };
        let body = ErrorBody {
            error: ErrorDetail {
                message: self.message,
                kind: kind.into(),
                param: None,
                code: self.code.map(String::from),
            },
        };
        let mut response = (self.status, Json(body)).into_response();
        if self.status == StatusCode::SERVICE_UNAVAILABLE {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
        }
        response
    }
}

impl From<JsonRejection> for ApiError {
    /// 415 without `Content-Type: application/json`, otherwise 400 (as OpenAI answers a field
    /// of the wrong type, where axum would say 422).
    fn from(rejection: JsonRejection) -> Self {
        let status = match rejection {
            JsonRejection::MissingJsonContentType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            _ => StatusCode::BAD_REQUEST,
        };
        ApiError::new(
            status,
            format!(
                "the request body is not valid JSON for this endpoint: {}",
                rejection.body_text()
            ),
            None,
        )
    }
}

impl From<SubmitError> for ApiError {
    fn from(error: SubmitError) -> Self {
        match error {
            SubmitError::Busy => ApiError {
                status: StatusCode::SERVICE_UNAVAILABLE,
                message: "every slot and queue place is taken: retry shortly".into(),
                code: Some("overloaded"),
            },
            SubmitError::Invalid(message) => ApiError::invalid(message),
            SubmitError::Stopped => ApiError {
                status: StatusCode::INTERNAL_SERVER_ERROR,
                message: "the engine has stopped".into(),
                code: None,
            },
        }
    }
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs())
}

fn finish_reason(reason: FinishReason) -> &'static str {
    match reason {
        FinishReason::Stop => "stop",
        FinishReason::Length | FinishReason::Cancelled => "length",
    }
}

impl AppState {
    fn check_model(&self, model: &Option<String>) -> Result<(), ApiError> {
        match model {
            Some(model) if model != &self.model_name => Err(ApiError {
                status: StatusCode::NOT_FOUND,
                message: format!(
                    "the model {model:?} is not served here; this server serves {:?}",
                    self.model_name
                ),
                code: Some("model_not_found"),
            }),
            _ => Ok(()),
        }
    }

    fn encode(&self, text: &str) -> Result<Vec<u32>, ApiError> {
        self.tokenizer
            .encode(text)
            .map_err(|error| ApiError::invalid(format!("cannot tokenize the prompt: {error}")))
    }

    fn encode_chat(&self, messages: &[ChatMessage]) -> Result<Vec<u32>, ApiError> {
        if messages.is_empty() {
            return Err(ApiError::invalid("`messages` is empty"));
        }
        if let Some((index, message)) = messages
            .iter()
            .enumerate()
            .find(|(_, message)| !CHAT_ROLES.contains(&message.role.as_str()))
        {
            return Err(ApiError::invalid(format!(
                "messages[{index}] has the role {:?}; this server supports {}",
                message.role,
                CHAT_ROLES.join(", ")
            )));
        }
        let messages: Vec<Message> = messages
            .iter()
            .map(|message| Message::new(&message.role, &message.content))
            .collect();
        let text = self
            .tokenizer
            .apply_chat_template(&messages, true)
            .map_err(|error| {
                ApiError::invalid(format!("cannot apply the chat template: {error}"))
            })?;
        self.encode(&text)
    }

    /// Fits the prompt and `max_new_tokens` into `--max-seq-len` with the server's
    /// `--context-policy`: drops prompt tokens or lowers `max_new_tokens` as the policy says, or
    /// refuses. Fitting twice changes nothing.
    fn fit_context(&self, params: &mut GenerateParams) -> Result<ContextPlan, ApiError> {
        let limits = self.engine.limits();
        let plan = limits
            .context_policy
            .fit(
                params.prompt_tokens.len(),
                params.max_new_tokens,
                limits.max_seq_len,
            )
            .map_err(|error| {
                ApiError::invalid(format!(
                    "{error}: shorten the prompt or lower max_tokens (the server runs with --max-seq-len {} and --context-policy {})",
                    limits.max_seq_len, limits.context_policy
                ))
            })?;
        params.prompt_tokens = params.prompt_tokens[plan.kept.clone()].to_vec();
        params.max_new_tokens = plan.max_new_tokens;
        Ok(plan)
    }

    /// Checks `params` ([`GenerateParams::check`]), submits and waits for the first chunk, so
    /// that a request the engine refuses is still an HTTP error and not a broken stream.
    async fn start(
        &self,
        mut params: GenerateParams,
    ) -> Result<(RequestStream, Option<Chunk>), ApiError> {
        self.fit_context(&mut params)?;
        params
            .check(self.engine.limits().max_seq_len)
            .map_err(ApiError::invalid)?;
        let mut stream = self.engine.submit(params)?;
        let first = stream.chunks.recv().await;
        match first {
            Some(Chunk::Rejected(message)) => Err(ApiError::invalid(message)),
            Some(Chunk::Failed(message)) => Err(ApiError {
                status: StatusCode::INTERNAL_SERVER_ERROR,
                message,
                code: None,
            }),
            first => Ok((stream, first)),
        }
    }
}

/// The roles the chat template knows.
const CHAT_ROLES: [&str; 3] = ["system", "user", "assistant"];

fn only_one_choice(n: Option<usize>) -> Result<(), ApiError> {
    match n {
        None | Some(1) => Ok(()),
        Some(n) => Err(ApiError::invalid(format!(
            "n = {n}: this server generates one choice per request"
        ))),
    }
}

/// A whole generation, collected from its chunks.
struct Collected {
    text: String,
    finish_reason: FinishReason,
    usage: Usage,
    timings: Timings,
}

/// Waits for a request's whole generation: `first`, then the rest of `stream.chunks`. The text
/// chunks, joined, are the text; `Done` ends it with its finish reason, usage and timings.
/// `Rejected` or `Failed`, or the channel closing before `Done`, is a 500 [`ApiError`] saying
/// why.
///
/// Book: week 2, chapter 11 (serving), task 3.
async fn collect(mut stream: RequestStream, first: Option<Chunk>) -> Result<Collected, ApiError> {
    let mut text = String::new();
    let mut next = first;
    loop {
        match next {
            Some(Chunk::Text(piece)) => text.push_str(&piece),
            Some(Chunk::Done {
                finish_reason,
                usage,
                timings,
            }) => {
                return Ok(Collected {
                    text,
                    finish_reason,
                    usage,
                    timings,
                })
            }
            Some(Chunk::Rejected(message) | Chunk::Failed(message)) => {
                return Err(ApiError {
                    status: StatusCode::INTERNAL_SERVER_ERROR,
                    message,
                    code: None,
                })
            }
            None => {
                return Err(ApiError {
                    status: StatusCode::INTERNAL_SERVER_ERROR,
                    message: "the engine dropped the request".into(),
                    code: None,
                })
            }
        }
        next = stream.chunks.recv().await;
    }
}

/// The chunks of a running request as a stream (the first one already received).
fn chunks(stream: RequestStream, first: Option<Chunk>) -> impl Stream<Item = Chunk> {
    stream::unfold((stream, first), |(mut stream, pending)| async move {
        let chunk = match pending {
            Some(chunk) => chunk,
            None => stream.chunks.recv().await?,
        };
        Some((chunk, (stream, None)))
    })
}

/// Server-sent events: one event per JSON value, its data the value's JSON text
/// (`data: {...}` and a blank line on the wire), then one last event `data: [DONE]`, as
/// OpenAI's streams end. Keep the connection alive (`KeepAlive`) while a request waits for a
/// slot.
///
/// Book: week 2, chapter 11 (serving), task 4.
fn sse(events: impl Stream<Item = Value> + Send + 'static) -> Response {
    let events = events
        .map(|value| Event::default().data(value.to_string()))
        .chain(stream::once(async { Event::default().data("[DONE]") }))
        .map(Ok::<_, Infallible>);
    Sse::new(events)
        .keep_alive(KeepAlive::default())
        .into_response()
}

/// The JSON values of an OpenAI stream, from a request's chunks. Each is `base` (id, object,
/// created, model) with `"choices"` set:
///
/// - `Chunk::Text(text)`: `"choices": [piece(text)]`.
/// - `Chunk::Done`: `"choices": [last(finish_reason(reason))]`; then, when `include_usage`, one
///   more with `"choices": []` and `"usage": {"prompt_tokens", "completion_tokens",
///   "total_tokens"}`.
/// - `Chunk::Rejected` or `Chunk::Failed`: `{"error": {"message": message, "type":
///   "server_error"}}` (the stream has started: too late for an HTTP error).
///
/// Book: week 2, chapter 11 (serving), task 4.
fn openai_stream(
    chunks: impl Stream<Item = Chunk> + Send + 'static,
    include_usage: bool,
    base: Value,
    piece: fn(&str) -> Value,
    last: fn(&str) -> Value,
) -> impl Stream<Item = Value> + Send + 'static {
    let with = move |choices: Value, usage: Option<Usage>| {
        let mut value = base.clone();
        value["choices"] = choices;
        if let Some(usage) = usage {
            value["usage"] = json!(usage);
        }
        value
    };
    chunks.flat_map(move |chunk| {
        let values: Vec<Value> = match chunk {
            Chunk::Text(text) => vec![with(json!([piece(&text)]), None)],
            Chunk::Done {
                finish_reason: reason,
                usage,
                ..
            } => {
                let mut values = vec![with(json!([last(finish_reason(reason))]), None)];
                if include_usage {
                    values.push(with(json!([]), Some(usage)));
                }
                values
            }
            Chunk::Rejected(message) | Chunk::Failed(message) => {
                vec![json!({"error": {"message": message, "type": "server_error"}})]
            }
        };
        stream::iter(values)
    })
}

/// `POST /v1/completions`, OpenAI's completions.
///
/// 1. `body?` answers a body that is not this endpoint's JSON with a 400. Check the model and
///    `n`, encode the prompt and build [`GenerateParams`]: `max_tokens` new tokens (OpenAI's
///    default 16), sampling with OpenAI's default temperature 1, the stop strings.
/// 2. `state.start(params)`. Every answer shares `{"id": "cmpl-<request id>", "object":
///    "text_completion", "created": now(), "model": state.model_name}`.
/// 3. With `"stream": true`: [`sse`] of [`openai_stream`] over [`chunks`], with
///    `stream_options.include_usage`, and choices `{"index": 0, "text": text, "logprobs": null,
///    "finish_reason": null}` for each piece and `{"index": 0, "text": "", "logprobs": null,
///    "finish_reason": reason}` at the end.
/// 4. Otherwise [`collect`] it and answer the shared fields plus `"choices": [{"index": 0,
///    "text": text, "logprobs": null, "finish_reason": "stop" | "length"}]` and
///    `"usage": {"prompt_tokens", "completion_tokens", "total_tokens"}`.
///
/// Book: week 2, chapter 11 (serving), task 3.
async fn completions(
    State(state): State<AppState>,
    body: Result<Json<CompletionRequest>, JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(request) = body?;
    state.check_model(&request.model)?;
    only_one_choice(request.n)?;
    let params = GenerateParams {
        prompt_tokens: state.encode(&request.prompt)?,
        max_new_tokens: request.max_tokens.unwrap_or(16),
        sampling: request.sampling.sampling(1.0),
        stop: request.sampling.stop(),
    };
    let (stream, first) = state.start(params).await?;
    let id = format!("cmpl-{}", stream.id);
    let base =
        json!({"id": id, "object": "text_completion", "created": now(), "model": state.model_name});
    if request.stream {
        let include_usage = request
            .stream_options
            .is_some_and(|options| options.include_usage);
        return Ok(sse(openai_stream(
            chunks(stream, first),
            include_usage,
            base,
            |text| json!({"index": 0, "text": text, "logprobs": null, "finish_reason": null}),
            |reason| json!({"index": 0, "text": "", "logprobs": null, "finish_reason": reason}),
        )));
    }
    let done = collect(stream, first).await?;
    let mut body = base;
    body["choices"] = json!([{"index": 0, "text": done.text, "logprobs": null,
        "finish_reason": finish_reason(done.finish_reason)}]);
    body["usage"] = json!(done.usage);
    Ok(Json(body).into_response())
}

/// `POST /v1/chat/completions`, OpenAI's chat completions: as [`completions`], but the prompt is
/// `messages` through the chat template, at most `max_completion_tokens` (or `max_tokens`; 256
/// when both are absent) new tokens, and the answer a `message` (whole) or `delta`s (streamed,
/// the first one naming the role). Given.
async fn chat_completions(
    State(state): State<AppState>,
    body: Result<Json<ChatCompletionRequest>, JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(request) = body?;
    state.check_model(&request.model)?;
    only_one_choice(request.n)?;
    let params = GenerateParams {
        prompt_tokens: state.encode_chat(&request.messages)?,
        max_new_tokens: request
            .max_completion_tokens
            .or(request.max_tokens)
            .unwrap_or(256),
        sampling: request.sampling.sampling(1.0),
        stop: request.sampling.stop(),
    };
    let (stream, first) = state.start(params).await?;
    let id = format!("chatcmpl-{}", stream.id);
    if request.stream {
        let include_usage = request
            .stream_options
            .is_some_and(|options| options.include_usage);
        let base = json!({"id": id, "object": "chat.completion.chunk", "created": now(),
            "model": state.model_name});
        // The first delta names the role, as OpenAI's streams do.
        let mut opening = base.clone();
        opening["choices"] = json!([{"index": 0, "delta": {"role": "assistant", "content": ""},
            "finish_reason": null}]);
        let values = stream::once(async move { opening }).chain(openai_stream(
            chunks(stream, first),
            include_usage,
            base,
            |text| json!({"index": 0, "delta": {"content": text}, "finish_reason": null}),
            |reason| json!({"index": 0, "delta": {}, "finish_reason": reason}),
        ));
        return Ok(sse(values));
    }
    let done = collect(stream, first).await?;
    Ok(Json(json!({
        "id": id,
        "object": "chat.completion",
        "created": now(),
        "model": state.model_name,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": done.text},
            "finish_reason": finish_reason(done.finish_reason)}],
        "usage": done.usage,
    }))
    .into_response())
}

/// What the context policy did to a `/generate` request, for its stats.
struct Fitted {
    params: GenerateParams,
    dropped: usize,
    stops_at_context: bool,
}

impl GenerateRequest {
    fn params(&self, state: &AppState) -> Result<Fitted, ApiError> {
        let prompt_tokens = match (&self.prompt, &self.messages) {
            (Some(prompt), None) => state.encode(prompt)?,
            (None, Some(messages)) => state.encode_chat(messages)?,
            _ => {
                return Err(ApiError::invalid(
                    "give exactly one of `prompt` (raw text) and `messages` (a chat)",
                ))
            }
        };
        let mut params = GenerateParams {
            prompt_tokens,
            max_new_tokens: self.max_new_tokens.unwrap_or(128),
            // The native API follows the CLI: greedy unless a temperature is given.
            sampling: self.sampling.sampling(0.0),
            stop: self.sampling.stop(),
        };
        let prompt_tokens = params.prompt_tokens.len();
        let plan = state.fit_context(&mut params)?;
        Ok(Fitted {
            params,
            dropped: prompt_tokens - plan.kept.len(),
            stops_at_context: plan.stops_at_context,
        })
    }
}

/// The native API's `stats`: the engine CLI's `--json` stats, field for field.
fn native_stats(
    state: &AppState,
    fitted: &Fitted,
    reason: FinishReason,
    usage: Usage,
    timings: Timings,
) -> GenerationStats {
    let limits = state.engine.limits();
    let model = state.engine.model_facts();
    let stop_reason = match reason {
        FinishReason::Length if fitted.stops_at_context => "context_length",
        FinishReason::Length => "max_tokens",
        FinishReason::Stop | FinishReason::Cancelled => "stop",
    };
    let ttft = timings.time_to_first_token_ms;
    let used = usage.prompt_tokens + usage.completion_tokens;
    GenerationStats {
        prompt_tokens: usage.prompt_tokens,
        prompt_tokens_dropped: fitted.dropped,
        generated_tokens: usage.completion_tokens,
        stop_reason,
        time_to_first_token_ms: (usage.completion_tokens > 0).then_some(ttft),
        prefill_tokens_per_s: (usage.completion_tokens > 0 && ttft > 0.0)
            .then(|| usage.prompt_tokens as f64 / (ttft / 1e3)),
        decode_tokens_per_s: (usage.completion_tokens > 1).then_some(timings.decode_tokens_per_s),
        total_time_ms: timings.total_ms,
        max_seq_len: limits.max_seq_len,
        context_policy: limits.context_policy.to_string(),
        tokens_left: limits.max_seq_len.saturating_sub(used),
        // The last token chosen never ran through the model. A cache of its own would grow
        // in whole steps (the batch's is shared: /metrics has it).
        kv_cache_allocated_bytes: model.map_or(0, |model| {
            used.saturating_sub(1).div_ceil(STEP as usize)
                * STEP as usize
                * model.kv_cache_bytes_per_token
        }),
        kv_cache_active_bytes: model.map_or(0, |model| {
            used.saturating_sub(1) * model.kv_cache_bytes_per_token
        }),
        quantization: model
            .and_then(|model| model.quantization)
            .map_or("none".into(), |(bits, _)| format!("int{bits}")),
        quant_group_size: model
            .and_then(|model| model.quantization)
            .map(|(_, group)| group),
        linear_weight_bytes: model.map_or(0, |model| model.weights.in_memory),
        linear_weight_bytes_float32: model.map_or(0, |model| model.weights.float32),
        peak_memory_bytes: mlx_rs::memory::peak_memory().unwrap_or(0),
    }
}

async fn generate(
    State(state): State<AppState>,
    body: Result<Json<GenerateRequest>, JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(request) = body?;
    let fitted = request.params(&state)?;
    let (stream, first) = state.start(fitted.params.clone()).await?;
    let done = collect(stream, first).await?;
    let stats = native_stats(
        &state,
        &fitted,
        done.finish_reason,
        done.usage,
        done.timings,
    );
    Ok(Json(json!({
        "text": done.text,
        "finish_reason": finish_reason(done.finish_reason),
        "stats": stats,
    }))
    .into_response())
}

/// Newline-delimited JSON: `{"text": ...}` per chunk, then `{"done": true, ...}`.
async fn generate_stream(
    State(state): State<AppState>,
    body: Result<Json<GenerateRequest>, JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(request) = body?;
    let fitted = request.params(&state)?;
    let (stream, first) = state.start(fitted.params.clone()).await?;
    let lines = chunks(stream, first).map(move |chunk| {
        let value = match chunk {
            Chunk::Text(text) => json!({"text": text}),
            Chunk::Done {
                finish_reason: reason,
                usage,
                timings,
            } => json!({"done": true, "finish_reason": finish_reason(reason),
                "stats": native_stats(&state, &fitted, reason, usage, timings)}),
            Chunk::Rejected(message) | Chunk::Failed(message) => json!({"error": message}),
        };
        Ok::<_, Infallible>(format!("{value}\n"))
    });
    Ok((
        [(header::CONTENT_TYPE, "application/x-ndjson")],
        Body::from_stream(lines),
    )
        .into_response())
}

async fn models(State(state): State<AppState>) -> Json<Value> {
    Json(json!({
        "object": "list",
        "data": [{"id": state.model_name, "object": "model", "created": 0, "owned_by": "tiny-llm"}],
    }))
}

async fn health() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

async fn metrics(State(state): State<AppState>) -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.engine.metrics().render(),
    )
        .into_response()
}

async fn not_found() -> ApiError {
    ApiError {
        status: StatusCode::NOT_FOUND,
        message: "no such endpoint: see /v1/completions, /v1/chat/completions, /v1/models, /generate, /generate/stream, /health, /metrics".into(),
        code: None,
    }
}
