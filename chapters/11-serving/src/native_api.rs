//! The engine's native API: `POST /generate` and `POST /generate/stream` (a raw prompt or a chat,
//! greedy unless a temperature is given), answered with the engine CLI's `--json` stats. Given.

use crate::{
    app_state::{chunks, finish_reason},
    server::collect,
    ApiError, AppState, Chunk, GenerateParams, GenerateRequest, GenerationStats, Timings, Usage,
};
use axum::{
    body::Body,
    extract::{rejection::JsonRejection, State},
    http::header,
    response::{IntoResponse, Response},
    Json,
};
use continuous_batching::FinishReason;
use futures_util::stream::StreamExt;
use kv_cache::STEP;
use serde_json::json;
use std::convert::Infallible;

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
            constraint: state.constraint(&self.response_format)?,
            logprobs: None,
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

/// `POST /generate`: the whole text, with the engine CLI's stats.
pub(crate) async fn generate(
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
pub(crate) async fn generate_stream(
    State(state): State<AppState>,
    body: Result<Json<GenerateRequest>, JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(request) = body?;
    let fitted = request.params(&state)?;
    let (stream, first) = state.start(fitted.params.clone()).await?;
    let lines = chunks(stream, first).filter_map(move |chunk| {
        let value = match chunk {
            Chunk::Text(text) => json!({"text": text}),
            // The native API asks for none.
            Chunk::Logprobs(_) => return std::future::ready(None),
            Chunk::Done {
                finish_reason: reason,
                usage,
                timings,
            } => json!({"done": true, "finish_reason": finish_reason(reason),
                "stats": native_stats(&state, &fitted, reason, usage, timings)}),
            Chunk::Rejected(message) | Chunk::Failed(message) => json!({"error": message}),
        };
        std::future::ready(Some(Ok::<_, Infallible>(format!("{value}\n"))))
    });
    Ok((
        [(header::CONTENT_TYPE, "application/x-ndjson")],
        Body::from_stream(lines),
    )
        .into_response())
}
