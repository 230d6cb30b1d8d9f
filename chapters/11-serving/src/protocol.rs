//! The JSON the server speaks: OpenAI's completions and chat completions, and the engine's own
//! simple `/generate` API. Requests become one [`GenerateParams`] for the engine thread.

use crate::{Tool, ToolCall, ToolChoice};
use continuous_batching::{SamplingParams, SharedConstraint, MAX_TOP_LOGPROBS};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// What the engine thread needs to run one request.
#[derive(Clone, Debug, PartialEq)]
pub struct GenerateParams {
    pub prompt_tokens: Vec<u32>,
    pub max_new_tokens: usize,
    pub sampling: SamplingParams,
    /// Generation stops before the first of these in the text.
    pub stop: Vec<String>,
    /// What the output must be (a JSON schema...), compiled by [`AppState::constraint`](crate::AppState::constraint).
    pub constraint: Option<SharedConstraint>,
    /// `Some(k)`: the log-probability of each token and of the `k` most likely alternatives.
    pub logprobs: Option<usize>,
}

/// OpenAI's limits on a request, which this server keeps too.
pub const MAX_STOP_STRINGS: usize = 4;
/// A longer stop string would make every token's stop search slow; no real one is this long.
pub const MAX_STOP_BYTES: usize = 256;
pub const MAX_TEMPERATURE: f32 = 2.0;

impl GenerateParams {
    /// What the engine would refuse late, or not at all: at least one new token and no more
    /// than `max_seq_len`, at most [`MAX_STOP_STRINGS`] stop strings of at most
    /// [`MAX_STOP_BYTES`] bytes, and a temperature in OpenAI's range `[0, MAX_TEMPERATURE]`.
    /// The sampler checks the other sampling parameters. The error names the field and the fix.
    pub fn check(&self, max_seq_len: usize) -> Result<(), String> {
        let tokens = self.max_new_tokens;
        if tokens == 0 {
            return Err("max_tokens (max_new_tokens on /generate) must be at least 1".into());
        }
        if tokens > max_seq_len {
            return Err(format!(
                "max_tokens (max_new_tokens on /generate) is {tokens}, more than the server's --max-seq-len {max_seq_len}: lower it"
            ));
        }
        if self.stop.len() > MAX_STOP_STRINGS {
            return Err(format!(
                "`stop` has {} strings; at most {MAX_STOP_STRINGS} are allowed",
                self.stop.len()
            ));
        }
        if let Some(stop) = self.stop.iter().find(|stop| stop.len() > MAX_STOP_BYTES) {
            return Err(format!(
                "a stop string has {} bytes; at most {MAX_STOP_BYTES} are allowed",
                stop.len()
            ));
        }
        let temperature = self.sampling.temperature;
        if !(0.0..=MAX_TEMPERATURE).contains(&temperature) {
            return Err(format!(
                "temperature must be between 0 and {MAX_TEMPERATURE} (0 is greedy), got {temperature}"
            ));
        }
        Ok(())
    }
}

/// One string or a list of them (OpenAI's `stop`).
#[derive(Clone, Debug, Deserialize)]
#[serde(untagged, expecting = "`stop` must be a string or a list of strings")]
pub enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    pub fn into_vec(self) -> Vec<String> {
        match self {
            OneOrMany::One(text) => vec![text],
            OneOrMany::Many(texts) => texts,
        }
    }
}

/// The sampling fields shared by every request kind (OpenAI names, plus the engine's own).
#[derive(Clone, Debug, Default, Deserialize)]
pub struct SamplingFields {
    pub temperature: Option<f32>,
    pub top_p: Option<f32>,
    pub top_k: Option<usize>,
    pub min_p: Option<f32>,
    pub repetition_penalty: Option<f32>,
    pub seed: Option<u64>,
    pub stop: Option<OneOrMany>,
}

impl SamplingFields {
    /// OpenAI's default temperature is 1; the engine's CLI defaults to greedy. A request says.
    pub fn sampling(&self, default_temperature: f32) -> SamplingParams {
        SamplingParams {
            temperature: self.temperature.unwrap_or(default_temperature),
            top_k: self.top_k,
            top_p: self.top_p,
            min_p: self.min_p,
            repetition_penalty: self.repetition_penalty,
            seed: self.seed.unwrap_or(0),
        }
    }

    /// The stop strings; an empty one would stop before the first token, so it is ignored.
    pub fn stop(&self) -> Vec<String> {
        let mut stop = self
            .stop
            .clone()
            .map(OneOrMany::into_vec)
            .unwrap_or_default();
        stop.retain(|text| !text.is_empty());
        stop
    }
}

/// OpenAI's `response_format`: free text, any JSON object, or JSON valid under a schema.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ResponseFormat {
    Text,
    JsonObject,
    JsonSchema {
        json_schema: JsonSchemaFormat,
    },
    /// A Lark grammar (llguidance's dialect): the server's own, for tool calls in a template's
    /// syntax; clients cannot send it.
    #[serde(skip_deserializing)]
    Lark(String),
}

/// The `json_schema` of a `response_format`. `strict` is accepted: the output always follows the
/// schema here.
#[derive(Clone, Debug, Deserialize, PartialEq)]
pub struct JsonSchemaFormat {
    pub name: Option<String>,
    /// Absent: any JSON value.
    pub schema: Option<Value>,
    pub strict: Option<bool>,
}

#[derive(Clone, Debug, Default, Deserialize)]
pub struct StreamOptions {
    #[serde(default)]
    pub include_usage: bool,
}

/// `POST /v1/completions`.
#[derive(Clone, Debug, Deserialize)]
pub struct CompletionRequest {
    pub model: Option<String>,
    pub prompt: String,
    /// OpenAI's default is 16.
    pub max_tokens: Option<usize>,
    #[serde(default)]
    pub stream: bool,
    pub stream_options: Option<StreamOptions>,
    /// Only 1 is supported.
    pub n: Option<usize>,
    pub response_format: Option<ResponseFormat>,
    /// The log-probability of each token and of this many alternatives (OpenAI's legacy
    /// `logprobs`; at most [`MAX_TOP_LOGPROBS`], as vLLM allows).
    pub logprobs: Option<usize>,
    #[serde(flatten)]
    pub sampling: SamplingFields,
}

impl CompletionRequest {
    /// The alternatives asked for with each token, or a message naming the bad value.
    pub fn logprobs(&self) -> Result<Option<usize>, String> {
        match self.logprobs {
            Some(top) if top > MAX_TOP_LOGPROBS => Err(format!(
                "`logprobs` is {top}; at most {MAX_TOP_LOGPROBS} alternatives are returned"
            )),
            top => Ok(top),
        }
    }
}

#[derive(Clone, Debug, Deserialize, Serialize)]
pub struct ChatMessage {
    pub role: String,
    /// A string, or OpenAI's list of content parts (`[{"type": "text", "text": ...}]`, what many
    /// clients send), joined; null (an assistant's tool calls) is empty. Required, as OpenAI's.
    #[serde(deserialize_with = "content_text")]
    pub content: String,
    /// An assistant's calls.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_calls: Option<Vec<ToolCall>>,
    /// A `tool` message: the call it answers, and the tool's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_call_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

impl ChatMessage {
    /// A message of text only.
    pub fn new(role: &str, content: &str) -> Self {
        ChatMessage {
            role: role.into(),
            content: content.into(),
            tool_calls: None,
            tool_call_id: None,
            name: None,
        }
    }
}

/// A message's content as text: a string, or its text parts joined; other parts (images, audio)
/// are an error naming them.
fn content_text<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<String, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Content {
        Text(String),
        Parts(Vec<Part>),
        Null(()),
    }
    #[derive(Deserialize)]
    struct Part {
        #[serde(rename = "type")]
        kind: String,
        text: Option<String>,
    }
    match Content::deserialize(deserializer)? {
        Content::Text(text) => Ok(text),
        Content::Null(()) => Ok(String::new()),
        Content::Parts(parts) => parts
            .into_iter()
            .map(|part| match (part.kind.as_str(), part.text) {
                ("text", Some(text)) => Ok(text),
                (kind, _) => Err(serde::de::Error::custom(format!(
                    "content parts of type {kind:?} are not supported: this model reads text parts"
                ))),
            })
            .collect(),
    }
}

/// `POST /tokenize`: the ids of `prompt` (raw text), or of `messages` through the chat template.
#[derive(Clone, Debug, Deserialize)]
pub struct TokenizeRequest {
    pub prompt: Option<String>,
    pub messages: Option<Vec<ChatMessage>>,
}

/// `POST /detokenize`: the text of `tokens`.
#[derive(Clone, Debug, Deserialize)]
pub struct DetokenizeRequest {
    pub tokens: Vec<u32>,
}

/// `POST /v1/chat/completions`.
#[derive(Clone, Debug, Deserialize)]
pub struct ChatCompletionRequest {
    pub model: Option<String>,
    pub messages: Vec<ChatMessage>,
    /// Newer clients send `max_completion_tokens`.
    pub max_tokens: Option<usize>,
    pub max_completion_tokens: Option<usize>,
    #[serde(default)]
    pub stream: bool,
    pub stream_options: Option<StreamOptions>,
    pub n: Option<usize>,
    pub response_format: Option<ResponseFormat>,
    /// Whether each token's log-probability comes back (`choices[].logprobs.content`).
    #[serde(default)]
    pub logprobs: bool,
    /// With `logprobs`: this many most likely alternatives of each token, at most
    /// [`MAX_TOP_LOGPROBS`].
    pub top_logprobs: Option<usize>,
    /// Functions the model may call ([`tool_plan`](crate::tool_plan) checks them).
    pub tools: Option<Vec<Tool>>,
    pub tool_choice: Option<ToolChoice>,
    /// `false`: at most one call per answer.
    pub parallel_tool_calls: Option<bool>,
    #[serde(flatten)]
    pub sampling: SamplingFields,
}

impl ChatCompletionRequest {
    /// The alternatives asked for with each token (`None`: no log-probabilities), or a message
    /// naming the bad value.
    pub fn logprobs(&self) -> Result<Option<usize>, String> {
        match (self.logprobs, self.top_logprobs) {
            (_, Some(top)) if top > MAX_TOP_LOGPROBS => Err(format!(
                "`top_logprobs` is {top}; it must be between 0 and {MAX_TOP_LOGPROBS}"
            )),
            (false, Some(_)) => {
                Err("`top_logprobs` needs `logprobs`: set \"logprobs\": true".into())
            }
            (false, None) => Ok(None),
            (true, top) => Ok(Some(top.unwrap_or(0))),
        }
    }
}

/// One generated token's log-probability and its most likely alternatives, in OpenAI's chat
/// shape (`choices[].logprobs.content[]`). `token` is the token's own text (U+FFFD where it
/// holds part of a character), `bytes` its UTF-8 bytes.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct TokenLogprob {
    pub token: String,
    pub logprob: f32,
    pub bytes: Vec<u8>,
    pub top_logprobs: Vec<TopLogprob>,
}

/// An alternative to a generated token.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct TopLogprob {
    pub token: String,
    pub logprob: f32,
    pub bytes: Vec<u8>,
}

/// Where an endpoint puts log-probabilities in a choice.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogprobsFormat {
    /// Chat completions: `{"content": [TokenLogprob...]}`.
    Chat,
    /// Legacy completions: `{"tokens", "token_logprobs", "top_logprobs": [{token: logprob}],
    /// "text_offset"}`.
    Completion,
}

impl LogprobsFormat {
    /// The `logprobs` of a choice holding `tokens`, its text starting `text_offset` characters
    /// into the generated text.
    pub fn render(self, tokens: &[TokenLogprob], text_offset: usize) -> Value {
        match self {
            LogprobsFormat::Chat => serde_json::json!({ "content": tokens }),
            LogprobsFormat::Completion => {
                let offsets: Vec<usize> = tokens
                    .iter()
                    .scan(text_offset, |offset, token| {
                        let start = *offset;
                        *offset += token.token.chars().count();
                        Some(start)
                    })
                    .collect();
                let top: Vec<serde_json::Map<String, Value>> = tokens
                    .iter()
                    .map(|token| {
                        token
                            .top_logprobs
                            .iter()
                            .map(|top| (top.token.clone(), Value::from(top.logprob)))
                            .collect()
                    })
                    .collect();
                serde_json::json!({
                    "tokens": tokens.iter().map(|token| &token.token).collect::<Vec<_>>(),
                    "token_logprobs": tokens.iter().map(|token| token.logprob).collect::<Vec<_>>(),
                    "top_logprobs": top,
                    "text_offset": offsets,
                })
            }
        }
    }
}

/// `POST /generate` and `POST /generate/stream`: the engine's CLI as JSON. Give `prompt` (raw
/// text) or `messages` (through the chat template).
#[derive(Clone, Debug, Deserialize)]
pub struct GenerateRequest {
    pub prompt: Option<String>,
    pub messages: Option<Vec<ChatMessage>>,
    pub max_new_tokens: Option<usize>,
    /// As on chat completions: JSON, or JSON valid under a schema.
    pub response_format: Option<ResponseFormat>,
    #[serde(flatten)]
    pub sampling: SamplingFields,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Usage {
    pub prompt_tokens: usize,
    pub completion_tokens: usize,
    pub total_tokens: usize,
    pub prompt_tokens_details: PromptTokensDetails,
}

/// OpenAI's breakdown of the prompt tokens.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct PromptTokensDetails {
    /// Prompt tokens read from the prefix cache (chapter 13) instead of computed.
    pub cached_tokens: usize,
}

/// How long a request took, as the engine's `--show-stats` reports it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct Timings {
    /// From arrival to the first token (queueing and prefill).
    pub time_to_first_token_ms: f64,
    /// Generated tokens after the first, per second.
    pub decode_tokens_per_s: f64,
    pub total_ms: f64,
}

/// The error body of every failed request, in OpenAI's shape.
#[derive(Clone, Debug, Serialize)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Clone, Debug, Serialize)]
pub struct ErrorDetail {
    pub message: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub param: Option<String>,
    pub code: Option<String>,
}

/// Everything known about one generation: what the engine's `--show-stats` and `--json` print
/// and what `/generate` answers carry as `stats`, under the same names. Sizes are bytes, times
/// milliseconds, speeds tokens per second.
#[derive(Clone, Debug, Serialize)]
pub struct GenerationStats {
    /// Prompt tokens the model read (after the context policy).
    pub prompt_tokens: usize,
    /// Prompt tokens the context policy dropped.
    pub prompt_tokens_dropped: usize,
    pub generated_tokens: usize,
    /// `eos`, `stop_string`, `max_tokens` or `context_length`; the server says `stop` for the
    /// first two.
    pub stop_reason: &'static str,
    /// On the server, from the request's arrival: queueing included.
    pub time_to_first_token_ms: Option<f64>,
    pub prefill_tokens_per_s: Option<f64>,
    /// `None` below two tokens.
    pub decode_tokens_per_s: Option<f64>,
    pub total_time_ms: f64,
    /// The context budget: prompt and generated tokens of one sequence.
    pub max_seq_len: usize,
    pub context_policy: String,
    /// Room left in the context after this generation.
    pub tokens_left: usize,
    /// The cache's storage, grown in steps of 256 positions (on the server, what a cache of
    /// this request's own would take: the batch's is shared).
    pub kv_cache_allocated_bytes: usize,
    /// The part of it holding this sequence's keys and values.
    pub kv_cache_active_bytes: usize,
    /// `none`, `int4` or `int8`: at load or as stored.
    pub quantization: String,
    pub quant_group_size: Option<i32>,
    /// The linear layers (embedding and output included) as they are in memory.
    pub linear_weight_bytes: usize,
    /// The same at float32.
    pub linear_weight_bytes_float32: usize,
    /// MLX's peak memory in this process.
    pub peak_memory_bytes: usize,
}
