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
        todo!("chapter 11, task 5: the status with an ErrorBody as JSON (its type from the status), and Retry-After: 1 on a 503")
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
    stream: RequestStream,
    first: Option<Chunk>,
) -> Result<Collected, ApiError> {
    todo!("chapter 11, task 3: join the Text chunks (and the Logprobs ones) until Done; Rejected, Failed or a closed channel is a 500")
}

/// Server-sent events: one event per JSON value, its data the value's JSON text
/// (`data: {...}` and a blank line on the wire), then one last event `data: [DONE]`, as
/// OpenAI's streams end. Keep the connection alive (`KeepAlive`) while a request waits for a
/// slot.
///
/// Book: week 2, chapter 11 (serving), task 4.
pub(crate) fn sse(events: impl Stream<Item = Value> + Send + 'static) -> Response {
    todo!("chapter 11, task 4: one event per JSON value, then data: [DONE]")
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
#[allow(unreachable_code)]
pub(crate) fn openai_stream(
    chunks: impl Stream<Item = Chunk> + Send + 'static,
    include_usage: bool,
    base: Value,
    piece: fn(&str) -> Value,
    last: fn(&str) -> Value,
    logprobs: LogprobsFormat,
) -> impl Stream<Item = Value> + Send + 'static {
    todo!("chapter 11, task 4: base + choices [piece(text)] per Text, [last(reason)] and the usage chunk at Done");
    // Only gives the stub a type: replace both lines.
    stream::empty()
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
    todo!("chapter 11, task 3: validate, build GenerateParams, start; stream as SSE or collect into OpenAI's completion JSON")
}
