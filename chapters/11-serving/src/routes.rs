//! Every route of the server, the middleware that counts requests, and the endpoints given whole:
//! chat completions, `/v1/models`, `/health`, `/metrics`, and the answer to an unknown route.
//! Your completions endpoint is in `src/server.rs`, the native API in `src/native_api.rs`.

use crate::{
    app_state::{chunks, finish_reason, now, only_one_choice},
    native_api::{generate, generate_stream},
    server::{collect, completions, openai_stream, sse},
    ApiError, AppState, ChatCompletionRequest, DetokenizeRequest, GenerateParams, LogprobsFormat,
    TokenizeRequest,
};
use axum::{
    extract::{rejection::JsonRejection, MatchedPath, Request, State},
    http::{header, StatusCode},
    middleware::{self, Next},
    response::{IntoResponse, Response},
    routing::{get, post},
    Json, Router,
};
use futures_util::stream::{self, StreamExt};
use serde_json::{json, Value};

/// Every route of the server.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/v1/completions", post(completions))
        .route("/v1/chat/completions", post(chat_completions))
        .route("/v1/models", get(models))
        .route("/generate", post(generate))
        .route("/generate/stream", post(generate_stream))
        .route("/tokenize", post(tokenize))
        .route("/detokenize", post(detokenize))
        .route("/health", get(health))
        .route("/metrics", get(metrics))
        .fallback(not_found)
        .layer(middleware::from_fn_with_state(
            state.clone(),
            count_requests,
        ))
        .with_state(state)
}

/// `POST /tokenize`: `{"tokens": [...], "count": n}` for a raw `prompt` or a chat's `messages`
/// (through the chat template, with the assistant's turn opened, as chat completions see it).
/// Given.
async fn tokenize(
    State(state): State<AppState>,
    body: Result<Json<TokenizeRequest>, JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(request) = body?;
    let tokens = match (&request.prompt, &request.messages) {
        (Some(prompt), None) => state.encode(prompt)?,
        (None, Some(messages)) => state.encode_chat(messages)?,
        _ => {
            return Err(ApiError::invalid(
                "give exactly one of `prompt` (raw text) and `messages` (a chat)",
            ))
        }
    };
    Ok(Json(json!({"count": tokens.len(), "tokens": tokens})).into_response())
}

/// `POST /detokenize`: `{"text": ...}`, the tokenizer's text for `tokens` (special tokens kept).
/// Given.
async fn detokenize(
    State(state): State<AppState>,
    body: Result<Json<DetokenizeRequest>, JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(request) = body?;
    let text = state
        .tokenizer
        .decode(&request.tokens)
        .map_err(|error| ApiError::invalid(format!("cannot detokenize `tokens`: {error}")))?;
    Ok(Json(json!({"text": text})).into_response())
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
        constraint: state.constraint(&request.response_format)?,
        logprobs: request.logprobs().map_err(ApiError::invalid)?,
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
            LogprobsFormat::Chat,
        ));
        return Ok(sse(values));
    }
    let done = collect(stream, first).await?;
    let logprobs = match request.logprobs {
        true => LogprobsFormat::Chat.render(&done.logprobs, 0),
        false => Value::Null,
    };
    Ok(Json(json!({
        "id": id,
        "object": "chat.completion",
        "created": now(),
        "model": state.model_name,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": done.text},
            "logprobs": logprobs, "finish_reason": finish_reason(done.finish_reason)}],
        "usage": done.usage,
    }))
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
