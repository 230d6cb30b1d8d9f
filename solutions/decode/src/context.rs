//! What happens to a prompt that does not fit the context budget. Given: the engine and the
//! server apply it before generating.

use std::{fmt, ops::Range, str::FromStr};

/// How a prompt is fitted into the context budget (the most tokens, prompt and generated
/// together, one sequence may hold).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ContextPolicy {
    /// Keep the whole prompt; generation stops early, with the stop reason `context_length`,
    /// when the context fills up. A prompt that leaves no room for one token is refused.
    #[default]
    AllowContextStop,
    /// Refuse a prompt when it and `max_new_tokens` together exceed the budget.
    Reject,
    /// Drop the oldest prompt tokens, keeping the last `budget - 1`; then as
    /// `allow_context_stop`.
    TruncateLeft,
    /// Drop the newest prompt tokens, keeping the first `budget - 1`; then as
    /// `allow_context_stop`.
    TruncateRight,
    /// Drop the oldest prompt tokens until all `max_new_tokens` fit after them.
    ReserveGeneration,
}

/// What [`ContextPolicy::fit`] decided.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ContextPlan {
    /// The prompt tokens kept, as a range of the prompt.
    pub kept: Range<usize>,
    /// At most `max_new_tokens`, fewer when the context fills up first.
    pub max_new_tokens: usize,
    /// The context, not `max_new_tokens`, limits generation.
    pub stops_at_context: bool,
}

/// A prompt the policy refuses.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ContextError {
    #[error(
        "the prompt ({prompt} tokens) leaves no room to generate in a context of {budget} tokens"
    )]
    PromptTooLong { prompt: usize, budget: usize },
    #[error(
        "the prompt ({prompt} tokens) and max_new_tokens ({max_new_tokens}) exceed the context of {budget} tokens"
    )]
    DoesNotFit {
        prompt: usize,
        max_new_tokens: usize,
        budget: usize,
    },
    #[error("max_new_tokens ({max_new_tokens}) leaves no room for a prompt in a context of {budget} tokens")]
    NoRoomForPrompt {
        max_new_tokens: usize,
        budget: usize,
    },
}

impl ContextPolicy {
    pub const ALL: [ContextPolicy; 5] = [
        ContextPolicy::AllowContextStop,
        ContextPolicy::Reject,
        ContextPolicy::TruncateLeft,
        ContextPolicy::TruncateRight,
        ContextPolicy::ReserveGeneration,
    ];

    pub fn name(self) -> &'static str {
        match self {
            ContextPolicy::AllowContextStop => "allow_context_stop",
            ContextPolicy::Reject => "reject",
            ContextPolicy::TruncateLeft => "truncate_left",
            ContextPolicy::TruncateRight => "truncate_right",
            ContextPolicy::ReserveGeneration => "reserve_generation",
        }
    }

    /// Fits a prompt of `prompt_len` tokens and up to `max_new_tokens` generated ones into
    /// `budget` tokens.
    pub fn fit(
        self,
        prompt_len: usize,
        max_new_tokens: usize,
        budget: usize,
    ) -> Result<ContextPlan, ContextError> {
        if budget == 0 {
            return Err(ContextError::PromptTooLong {
                prompt: prompt_len,
                budget,
            });
        }
        let whole = 0..prompt_len;
        let (kept, max_new_tokens) = match self {
            ContextPolicy::AllowContextStop if prompt_len >= budget => {
                return Err(ContextError::PromptTooLong {
                    prompt: prompt_len,
                    budget,
                })
            }
            ContextPolicy::Reject if prompt_len.saturating_add(max_new_tokens) > budget => {
                return Err(ContextError::DoesNotFit {
                    prompt: prompt_len,
                    max_new_tokens,
                    budget,
                })
            }
            ContextPolicy::ReserveGeneration if max_new_tokens >= budget => {
                return Err(ContextError::NoRoomForPrompt {
                    max_new_tokens,
                    budget,
                })
            }
            ContextPolicy::TruncateLeft => (
                prompt_len.saturating_sub(budget - 1)..prompt_len,
                max_new_tokens,
            ),
            ContextPolicy::TruncateRight => (0..prompt_len.min(budget - 1), max_new_tokens),
            ContextPolicy::ReserveGeneration => (
                prompt_len.saturating_sub(budget - max_new_tokens)..prompt_len,
                max_new_tokens,
            ),
            _ => (whole, max_new_tokens),
        };
        let room = budget - kept.len();
        Ok(ContextPlan {
            kept,
            max_new_tokens: max_new_tokens.min(room),
            stops_at_context: room < max_new_tokens,
        })
    }
}

impl fmt::Display for ContextPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for ContextPolicy {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        ContextPolicy::ALL
            .into_iter()
            .find(|policy| policy.name() == text)
            .ok_or_else(|| {
                let names: Vec<_> = ContextPolicy::ALL.map(ContextPolicy::name).to_vec();
                format!(
                    "unknown context policy {text:?}: expected one of {}",
                    names.join(", ")
                )
            })
    }
}
