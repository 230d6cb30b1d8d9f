//! Every route of the server, the middleware that counts requests, and the endpoints given whole:
//! chat completions, `/v1/models`, `/health`, `/metrics`, and the answer to an unknown route.
//! Your completions endpoint is in `src/server.rs`, the native API in `src/native_api.rs`.

use crate::{
    app_state::{chunks, finish_reason, now, only_one_choice, Collected},
    native_api::{generate, generate_stream},
    server::{collect, completions, openai_stream, sse},
    tool_plan, ApiError, AppState, ChatCompletionRequest, ChatMessage, DetokenizeRequest,
    GenerateParams, LogprobsFormat, ResponseFormat, TokenizeRequest, ToolAnswer, ToolPlan,
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
/// the first one naming the role). With `tools`, the answer is constrained and parsed as
/// [`ToolPlan`] says ([`tool_answer`]). Given.
async fn chat_completions(
    State(state): State<AppState>,
    body: Result<Json<ChatCompletionRequest>, JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(request) = body?;
    state.check_model(&request.model)?;
    only_one_choice(request.n)?;
    let plan = tool_plan(
        &request.tools,
        &request.tool_choice,
        request.parallel_tool_calls,
    )
    .map_err(ApiError::invalid)?;
    // A template with its own tool syntax renders the tools and the history's calls itself.
    let native = state
        .chat_template
        .as_deref()
        .filter(|template| template.writes_hermes_tool_calls())
        .filter(|_| plan.is_some() || request.messages.iter().any(is_about_tools));
    let constraint = match &plan {
        Some(_) if !matches!(request.response_format, None | Some(ResponseFormat::Text)) => {
            return Err(ApiError::invalid(
                "`response_format` and `tools` both constrain the answer: give one of them (or `tool_choice: \"none\"`)",
            ))
        }
        Some(plan) if native.is_some() => plan
            .hermes_grammar()
            .map(|grammar| state.tool_grammar(grammar))
            .transpose()?,
        Some(plan) => Some(state.tool_constraint(plan)?),
        None => state.constraint(&request.response_format)?,
    };
    let prompt_tokens = match native {
        Some(template) => state.encode_with_template(template, &request.messages, plan.as_ref())?,
        None => state.encode_chat_with_tools(&request.messages, plan.as_ref())?,
    };
    let params = GenerateParams {
        prompt_tokens,
        max_new_tokens: request
            .max_completion_tokens
            .or(request.max_tokens)
            .unwrap_or(256),
        sampling: request.sampling.sampling(1.0),
        stop: request.sampling.stop(),
        constraint,
        logprobs: request.logprobs().map_err(ApiError::invalid)?,
    };
    let (stream, first) = state.start(params).await?;
    let id = format!("chatcmpl-{}", stream.id);
    let base = json!({"id": id, "object": "chat.completion.chunk", "created": now(),
        "model": state.model_name});
    let include_usage = request
        .stream_options
        .as_ref()
        .is_some_and(|options| options.include_usage);
    if let Some(plan) = plan {
        let request_id = stream.id;
        let done = collect(stream, first).await?;
        let answer = tool_answer(&plan, done, request_id, request.logprobs, native.is_some());
        if !request.stream {
            let mut body = answer.whole(base);
            body["object"] = json!("chat.completion");
            return Ok(Json(body).into_response());
        }
        return Ok(sse(stream::iter(answer.chunks(base, include_usage))));
    }
    if request.stream {
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
    let mut body = base;
    body["object"] = json!("chat.completion");
    body["choices"] = json!([{"index": 0, "message": {"role": "assistant", "content": done.text},
        "logprobs": logprobs, "finish_reason": finish_reason(done.finish_reason)}]);
    body["usage"] = json!(done.usage);
    Ok(Json(body).into_response())
}

/// A message that calls tools or answers a call.
fn is_about_tools(message: &ChatMessage) -> bool {
    message.role == "tool" || message.tool_calls.is_some()
}

/// A whole answer under tools: its message (text, or `tool_calls` with `content: null`), the
/// finish reason (`tool_calls` when it called), its logprobs and usage.
struct ToolAnswerParts {
    message: Value,
    finish_reason: &'static str,
    logprobs: Value,
    usage: Value,
}

/// Parses a collected answer under `plan` into OpenAI's shape.
fn tool_answer(
    plan: &ToolPlan,
    done: Collected,
    request_id: u64,
    logprobs: bool,
    hermes: bool,
) -> ToolAnswerParts {
    let logprobs = match logprobs {
        true => LogprobsFormat::Chat.render(&done.logprobs, 0),
        false => Value::Null,
    };
    let answer = match hermes {
        true => plan.parse_hermes(&done.text, request_id),
        false => plan.parse(&done.text, request_id),
    };
    let (message, finish_reason) = match answer {
        ToolAnswer::Calls(calls) => (
            json!({"role": "assistant", "content": null, "tool_calls": calls}),
            "tool_calls",
        ),
        ToolAnswer::Text(text) => (
            json!({"role": "assistant", "content": text}),
            finish_reason(done.finish_reason),
        ),
    };
    ToolAnswerParts {
        message,
        finish_reason,
        logprobs,
        usage: json!(done.usage),
    }
}

impl ToolAnswerParts {
    fn whole(self, mut base: Value) -> Value {
        base["choices"] = json!([{"index": 0, "message": self.message, "logprobs": self.logprobs,
            "finish_reason": self.finish_reason}]);
        base["usage"] = self.usage;
        base
    }

    /// Streamed: the answer is known whole only once it parses, so it comes as one delta
    /// (`content`, or `tool_calls` each with its `index`) after the role's, then the finish.
    fn chunks(self, base: Value, include_usage: bool) -> Vec<Value> {
        let with = |choices: Value| {
            let mut value = base.clone();
            value["choices"] = choices;
            value
        };
        let mut delta = self.message;
        if let Some(calls) = delta["tool_calls"].as_array_mut() {
            for (index, call) in calls.iter_mut().enumerate() {
                call["index"] = json!(index);
            }
        }
        if let Some(fields) = delta.as_object_mut() {
            fields.remove("role");
            fields.retain(|_, value| !value.is_null());
        }
        let mut values = vec![
            with(
                json!([{"index": 0, "delta": {"role": "assistant", "content": ""},
                "finish_reason": null}]),
            ),
            with(
                json!([{"index": 0, "delta": delta, "logprobs": self.logprobs,
                "finish_reason": null}]),
            ),
            with(json!([{"index": 0, "delta": {}, "finish_reason": self.finish_reason}])),
        ];
        if include_usage {
            let mut usage = with(json!([]));
            usage["usage"] = self.usage;
            values.push(usage);
        }
        values
    }
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
