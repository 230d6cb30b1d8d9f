//! What every handler shares: the [`AppState`], the steps every endpoint takes with it (check the
//! model, tokenize, fit the context, start the request), and the pieces of a request's answer.
//! Given: your handlers in `src/server.rs` use them.

use crate::{
    plain_messages, template_messages, ApiError, ChatMessage, Chunk, EngineHandle, GenerateParams,
    JsonSchemaFormat, RequestStream, ResponseFormat, Timings, TokenLogprob, ToolPlan, Usage,
};
use axum::http::StatusCode;
use continuous_batching::{FinishReason, SharedConstraint};
use decode::{ChatTemplate, ContextPlan, Message, Tokenizer};
use futures_util::stream::{self, Stream};
use std::{
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
    /// Compiles `response_format`s (week 3, chapter 15's grammars); `None`: the server answers
    /// 400 to any format but text.
    pub formats: Option<FormatCompiler>,
    /// The model's chat template, rendered directly for chats with tools when it has its own
    /// tool-call syntax ([`ChatTemplate::writes_hermes_tool_calls`]); otherwise, or `None`, the
    /// tools go through the tokenizer's template as [`plain_messages`] writes them.
    pub chat_template: Option<Arc<ChatTemplate>>,
}

/// A `response_format` as a constraint on the request's tokens, or why it cannot be one (a
/// schema that is invalid or that no value satisfies).
pub type FormatCompiler =
    Arc<dyn Fn(&ResponseFormat) -> Result<SharedConstraint, String> + Send + Sync>;

/// Seconds since the Unix epoch, for OpenAI's `created`.
pub(crate) fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs())
}

/// OpenAI's name for why a request ended.
pub(crate) fn finish_reason(reason: FinishReason) -> &'static str {
    match reason {
        FinishReason::Stop => "stop",
        FinishReason::Length | FinishReason::Cancelled => "length",
    }
}

impl AppState {
    /// A 404 when the request names a model this server does not serve.
    pub(crate) fn check_model(&self, model: &Option<String>) -> Result<(), ApiError> {
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

    /// The constraint of a request's `response_format`: none for text; a 400 naming the problem
    /// when the format cannot be compiled or this server compiles none.
    pub fn constraint(
        &self,
        format: &Option<ResponseFormat>,
    ) -> Result<Option<SharedConstraint>, ApiError> {
        match format {
            None | Some(ResponseFormat::Text) => Ok(None),
            Some(format) => self.compile(format, "`response_format`").map(Some),
        }
    }

    /// The constraint of a chat's tools ([`ToolPlan::answer_schema`]); a 400 when a tool's
    /// `parameters` cannot be compiled or this server compiles no formats.
    pub fn tool_constraint(&self, plan: &ToolPlan) -> Result<SharedConstraint, ApiError> {
        let format = ResponseFormat::JsonSchema {
            json_schema: JsonSchemaFormat {
                name: Some("tool_calls".into()),
                schema: Some(plan.answer_schema()),
                strict: None,
            },
        };
        self.compile(&format, "`tools` (a tool's `parameters` schema)")
    }

    /// The constraint of a Lark grammar the server wrote for a chat's tools.
    pub fn tool_grammar(&self, grammar: String) -> Result<SharedConstraint, ApiError> {
        self.compile(
            &ResponseFormat::Lark(grammar),
            "`tools` (a tool's `parameters` schema)",
        )
    }

    fn compile(&self, format: &ResponseFormat, field: &str) -> Result<SharedConstraint, ApiError> {
        let Some(compile) = &self.formats else {
            return Err(ApiError::invalid(format!(
                "this server compiles no grammars: {field} is not supported (only text)"
            )));
        };
        compile(format).map_err(|error| ApiError::invalid(format!("{field}: {error}")))
    }

    /// Tokenizes a raw prompt; a 400 when the tokenizer cannot.
    pub(crate) fn encode(&self, text: &str) -> Result<Vec<u32>, ApiError> {
        self.tokenizer
            .encode(text)
            .map_err(|error| ApiError::invalid(format!("cannot tokenize the prompt: {error}")))
    }

    /// Tokenizes a chat through the chat template; a 400 for an empty chat or an unknown role.
    pub(crate) fn encode_chat(&self, messages: &[ChatMessage]) -> Result<Vec<u32>, ApiError> {
        self.encode_chat_with_tools(messages, None)
    }

    /// [`AppState::encode_chat`] with the tools of `plan` described in the system message;
    /// tool calls and results in the history are written as [`plain_messages`] says.
    pub(crate) fn encode_chat_with_tools(
        &self,
        messages: &[ChatMessage],
        plan: Option<&ToolPlan>,
    ) -> Result<Vec<u32>, ApiError> {
        check_messages(messages)?;
        let messages: Vec<Message> = plain_messages(messages, plan)
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

    /// The chat through `template` itself, with the plan's tools as its `tools` argument and
    /// the history's calls and results in OpenAI's JSON ([`template_messages`]).
    pub(crate) fn encode_with_template(
        &self,
        template: &ChatTemplate,
        messages: &[ChatMessage],
        plan: Option<&ToolPlan>,
    ) -> Result<Vec<u32>, ApiError> {
        check_messages(messages)?;
        let args = plan.map(ToolPlan::template_args).unwrap_or_default();
        let text = template
            .render_json(&template_messages(messages), true, &args)
            .map_err(|error| {
                ApiError::invalid(format!("cannot apply the chat template: {error}"))
            })?;
        self.encode(&text)
    }

    /// Fits the prompt and `max_new_tokens` into `--max-seq-len` with the server's
    /// `--context-policy`: drops prompt tokens or lowers `max_new_tokens` as the policy says, or
    /// refuses. Fitting twice changes nothing.
    pub(crate) fn fit_context(&self, params: &mut GenerateParams) -> Result<ContextPlan, ApiError> {
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
    pub(crate) async fn start(
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

/// A 400 for an empty chat, an unknown role, or a tool result without the id of its call.
fn check_messages(messages: &[ChatMessage]) -> Result<(), ApiError> {
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
    if let Some(index) = messages
        .iter()
        .position(|message| message.role == "tool" && message.tool_call_id.is_none())
    {
        return Err(ApiError::invalid(format!(
            "messages[{index}] has the role \"tool\" without `tool_call_id`: give the id of the call it answers"
        )));
    }
    Ok(())
}

/// The roles the chat template knows.
const CHAT_ROLES: [&str; 4] = ["system", "user", "assistant", "tool"];

/// A 400 unless the request asks for one choice (`n`), all this server generates.
pub(crate) fn only_one_choice(n: Option<usize>) -> Result<(), ApiError> {
    match n {
        None | Some(1) => Ok(()),
        Some(n) => Err(ApiError::invalid(format!(
            "n = {n}: this server generates one choice per request"
        ))),
    }
}

/// A whole generation, collected from its chunks.
pub(crate) struct Collected {
    pub(crate) text: String,
    /// Of each token, when the request asked.
    pub(crate) logprobs: Vec<TokenLogprob>,
    pub(crate) finish_reason: FinishReason,
    pub(crate) usage: Usage,
    pub(crate) timings: Timings,
}

/// The chunks of a running request as a stream (the first one already received).
pub(crate) fn chunks(stream: RequestStream, first: Option<Chunk>) -> impl Stream<Item = Chunk> {
    stream::unfold((stream, first), |(mut stream, pending)| async move {
        let chunk = match pending {
            Some(chunk) => chunk,
            None => stream.chunks.recv().await?,
        };
        Some((chunk, (stream, None)))
    })
}
