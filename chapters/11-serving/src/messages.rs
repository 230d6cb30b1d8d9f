//! What the HTTP handlers and the engine thread exchange: the command that submits a request,
//! the chunks its stream carries back, and why a request is refused before it starts. Given.

use crate::{Timings, TokenLogprob, Usage};
use continuous_batching::{FinishReason, Request};
use std::time::Instant;
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender};

/// What a request's stream carries.
#[derive(Clone, Debug, PartialEq)]
pub enum Chunk {
    /// New text (never part of a stop string).
    Text(String),
    /// The log-probabilities of the token whose text comes next, for a request that asked;
    /// sent before that text.
    Logprobs(Vec<TokenLogprob>),
    /// The last chunk of a request that ran.
    Done {
        finish_reason: FinishReason,
        usage: Usage,
        timings: Timings,
    },
    /// The request was refused as it reached the engine thread (bad sampling parameters).
    Rejected(String),
    /// The request failed while running (an MLX error).
    Failed(String),
}

/// Why a request was refused before it reached the engine thread.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SubmitError {
    /// Every slot and every waiting place is taken: retry later.
    Busy,
    /// Prompt plus `max_tokens` exceed `max_seq_len`, or the prompt is empty.
    Invalid(String),
    /// The engine thread has stopped.
    Stopped,
}

/// A submitted request: its id and the stream of its chunks. Dropping it cancels the request.
pub struct RequestStream {
    pub id: u64,
    pub prompt_tokens: usize,
    pub chunks: UnboundedReceiver<Chunk>,
}

/// What a handler sends the engine thread.
pub(crate) enum Command {
    Submit {
        request: Request,
        stop: Vec<String>,
        sink: UnboundedSender<Chunk>,
        arrived: Instant,
    },
}
