//! What goes into the scheduler and what comes out: a request, the events a step produces for
//! it, and why it ends. Given.

use crate::{SharedConstraint, TokenLogprobs};
use sampling::SamplingParams;

/// One generation to run.
#[derive(Clone, Debug)]
pub struct Request {
    /// Chosen by the caller; events carry it.
    pub id: u64,
    pub prompt: Vec<u32>,
    pub max_new_tokens: usize,
    pub sampling: SamplingParams,
    /// Token ids that end the request (the model's EOS ids); not counted as output.
    pub stop_token_ids: Vec<u32>,
    /// Restricts each token to those it allows (chapter 15's grammars); `None` for free text.
    pub constraint: Option<SharedConstraint>,
    /// `Some(k)`: each `Token` event carries the token's log-probability and the `k` most
    /// likely tokens' (at most [`MAX_TOP_LOGPROBS`](crate::MAX_TOP_LOGPROBS)); `None`: neither.
    pub logprobs: Option<usize>,
}

/// Why a request left the scheduler.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FinishReason {
    /// It chose one of its stop tokens.
    Stop,
    /// It generated `max_new_tokens` tokens.
    Length,
    /// [`Scheduler::cancel`] removed it.
    Cancelled,
}

/// What a step produced, in order, for the caller to route to each request's client.
#[derive(Clone, Debug, PartialEq)]
pub enum Event {
    Token {
        id: u64,
        token: u32,
        /// Filled in by [`attach_logprobs`](crate::attach_logprobs) when the request asked.
        logprobs: Option<TokenLogprobs>,
    },
    Finished {
        id: u64,
        reason: FinishReason,
    },
}
