//! Your part of the HTTP API (the routes, the shared steps and the given endpoints are in
//! `src/routes.rs`, `src/app_state.rs` and `src/native_api.rs`): OpenAI's completions, whole or
//! streamed as server-sent events, and errors in OpenAI's shape.

use crate::{
    app_state::{chunks, finish_reason, now, only_one_choice, Collected},
    ApiError, AppState, Chunk, CompletionRequest, ErrorBody, ErrorDetail, GenerateParams,
    LogprobsFormat, RequestStream, TokenLogprob, Usage,
};
use axum::{
    extract::{rejection::JsonRejection, State},
    http::{header, StatusCode},
    response::{
        sse::{Event, KeepAlive, Sse},
        IntoResponse, Response,
    },
    Json,
};
use futures_util::stream::{self, Stream, StreamExt};
use serde_json::{json, Value};
use std::convert::Infallible;

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

/// Waits for a request's whole generation: `first`, then the rest of `stream.chunks`. The text
/// chunks, joined, are the text; the `Logprobs` chunks, in order, its log-probabilities; `Done`
/// ends it with its finish reason, usage and timings.
/// `Rejected` or `Failed`, or the channel closing before `Done`, is a 500 [`ApiError`] saying
/// why.
///
/// Book: week 2, chapter 11 (serving), task 3.
pub(crate) async fn collect(
    mut stream: RequestStream,
    first: Option<Chunk>,
) -> Result<Collected, ApiError> {
    let mut text = String::new();
    let mut logprobs = Vec::new();
    let mut next = first;
    loop {
        match next {
            Some(Chunk::Text(piece)) => text.push_str(&piece),
            Some(Chunk::Logprobs(tokens)) => logprobs.extend(tokens),
            Some(Chunk::Done {
                finish_reason,
                usage,
                timings,
            }) => {
                return Ok(Collected {
                    text,
                    logprobs,
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

/// Server-sent events: one event per JSON value, its data the value's JSON text
/// (`data: {...}` and a blank line on the wire), then one last event `data: [DONE]`, as
/// OpenAI's streams end. Keep the connection alive (`KeepAlive`) while a request waits for a
/// slot.
///
/// Book: week 2, chapter 11 (serving), task 4.
pub(crate) fn sse(events: impl Stream<Item = Value> + Send + 'static) -> Response {
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
/// - `Chunk::Logprobs(tokens)`: nothing yet; the tokens wait for the text that follows them.
/// - `Chunk::Text(text)`: `"choices": [piece(text)]`, with `"logprobs"` set to
///   `logprobs.render(waiting tokens, characters of text sent before)` when tokens wait.
/// - `Chunk::Done`: first, when tokens still wait, a `piece("")` with them as above; then
///   `"choices": [last(finish_reason(reason))]`; then, when `include_usage`, one
///   more with `"choices": []` and `"usage": {"prompt_tokens", "completion_tokens",
///   "total_tokens"}`.
/// - `Chunk::Rejected` or `Chunk::Failed`: `{"error": {"message": message, "type":
///   "server_error"}}` (the stream has started: too late for an HTTP error).
///
/// Book: week 2, chapter 11 (serving), task 4.
pub(crate) fn openai_stream(
    chunks: impl Stream<Item = Chunk> + Send + 'static,
    include_usage: bool,
    base: Value,
    piece: fn(&str) -> Value,
    last: fn(&str) -> Value,
    logprobs: LogprobsFormat,
) -> impl Stream<Item = Value> + Send + 'static {
    let with = move |choices: Value, usage: Option<Usage>| {
        let mut value = base.clone();
        value["choices"] = choices;
        if let Some(usage) = usage {
            value["usage"] = json!(usage);
        }
        value
    };
    // The log-probabilities of the tokens whose text has not been sent, and the characters sent.
    let mut pending: Vec<TokenLogprob> = Vec::new();
    let mut sent = 0;
    let mut piece_with = move |text: &str, pending: &mut Vec<TokenLogprob>| {
        let mut choice = piece(text);
        if !pending.is_empty() {
            choice["logprobs"] = logprobs.render(pending, sent);
            pending.clear();
        }
        sent += text.chars().count();
        choice
    };
    chunks.flat_map(move |chunk| {
        let values: Vec<Value> = match chunk {
            Chunk::Text(text) => vec![with(json!([piece_with(&text, &mut pending)]), None)],
            Chunk::Logprobs(tokens) => {
                pending.extend(tokens);
                Vec::new()
            }
            Chunk::Done {
                finish_reason: reason,
                usage,
                ..
            } => {
                let mut values = Vec::new();
                if !pending.is_empty() {
                    values.push(with(json!([piece_with("", &mut pending)]), None));
                }
                values.push(with(json!([last(finish_reason(reason))]), None));
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
///    default 16), sampling with OpenAI's default temperature 1, the stop strings, and the
///    constraint of `response_format` (`state.constraint`, a 400 when it does not compile),
///    and `request.logprobs()` (a 400 when out of range).
/// 2. `state.start(params)`. Every answer shares `{"id": "cmpl-<request id>", "object":
///    "text_completion", "created": now(), "model": state.model_name}`.
/// 3. With `"stream": true`: [`sse`] of [`openai_stream`] over [`chunks`], with
///    `stream_options.include_usage`, and choices `{"index": 0, "text": text, "logprobs": null,
///    "finish_reason": null}` for each piece and `{"index": 0, "text": "", "logprobs": null,
///    "finish_reason": reason}` at the end, log-probabilities in [`LogprobsFormat::Completion`].
/// 4. Otherwise [`collect`] it and answer the shared fields plus `"choices": [{"index": 0,
///    "text": text, "logprobs": null (or, when asked, `LogprobsFormat::Completion` of every
///    token), "finish_reason": "stop" | "length"}]` and
///    `"usage": {"prompt_tokens", "completion_tokens", "total_tokens"}`.
///
/// Book: week 2, chapter 11 (serving), task 3.
pub(crate) async fn completions(
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
        constraint: state.constraint(&request.response_format)?,
        logprobs: request.logprobs().map_err(ApiError::invalid)?,
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
            LogprobsFormat::Completion,
        )));
    }
    let done = collect(stream, first).await?;
    let logprobs = match request.logprobs {
        Some(_) => LogprobsFormat::Completion.render(&done.logprobs, 0),
        None => Value::Null,
    };
    let mut body = base;
    body["choices"] = json!([{"index": 0, "text": done.text, "logprobs": logprobs,
        "finish_reason": finish_reason(done.finish_reason)}]);
    body["usage"] = json!(done.usage);
    Ok(Json(body).into_response())
}
