//! Your part of the engine thread (the thread itself, its handle and its loop are in
//! `src/engine_thread.rs`): admitting a request, and routing each generated token to its client.

use crate::{
    engine_thread::{held_back, Active, EngineLoop},
    messages::Command,
    Chunk, EngineHandle, GenerateParams, RequestStream, SubmitError,
};
use continuous_batching::{FinishReason, Request};
use std::{sync::atomic::Ordering, time::Instant};
use tokio::sync::mpsc::unbounded_channel;

impl EngineHandle {
    /// Queues a request for the engine thread and returns at once, without waiting for it.
    ///
    /// - `Invalid` when the prompt is empty, or when prompt plus `max_new_tokens` exceed
    ///   `limits.max_seq_len` (say both numbers and the limit, and what to change).
    /// - `Busy` when `scheduler.max_running + max_waiting` requests are already in. They are
    ///   counted in `shared.outstanding`: take a place with one atomic compare-and-add
    ///   (`fetch_update`), so that two handlers never both take the last one; the engine thread
    ///   gives it back when the request finishes, fails or is cancelled.
    /// - Otherwise: a fresh id from `shared.next_id`, a chunk channel (`unbounded_channel`), and
    ///   a `Command::Submit` to the engine thread carrying the [`Request`] (its
    ///   `stop_token_ids` empty: the engine thread adds the model's EOS ids; its constraint from
    ///   `params`), the stop strings,
    ///   the sender half and the arrival time. When the engine thread has stopped, give the
    ///   place back and return `Stopped`.
    /// - Returns the id, the prompt's length and the receiver half.
    ///
    /// Book: week 2, chapter 11 (serving), task 1.
    pub fn submit(&self, params: GenerateParams) -> Result<RequestStream, SubmitError> {
        todo!("chapter 11, task 1: check the lengths, take a place in `outstanding` (or Busy), send a Command::Submit with a new channel")
    }
}

impl Active {
    /// Sends, as one `Chunk::Text`, the text not sent yet up to what [`held_back`] keeps back
    /// (the end of `text` that could still grow into a stop string), and moves `sent` past it.
    /// Returns `false` when the client has gone (the send fails, or, with nothing to send, the
    /// channel is closed).
    ///
    /// Book: week 2, chapter 11 (serving), task 2.
    fn send_safe_text(&mut self) -> bool {
        todo!("chapter 11, task 2: send text[sent..len - held_back] as one Chunk::Text; false when the client has gone")
    }
}

impl EngineLoop<'_> {
    /// Routes one generated token of request `id` to its client; an id no longer active (a
    /// request cancelled in this step) is ignored.
    ///
    /// - Timings and metrics: the first token sets `first_token` and observes
    ///   `time_to_first_token` (seconds since `arrived`), a later one observes
    ///   `inter_token_latency` (seconds since `last_token`); every token counts in
    ///   `generation_tokens` and updates `last_token` and `generated`.
    /// - Text: the detokenizer's new text joins `text`. A detokenizer error sends
    ///   `Chunk::Failed` and cancels the request.
    /// - Stop strings: when one of `stop` occurs in `text`, cut `text` before the earliest
    ///   occurrence, send what was not sent yet as `Chunk::Text`, then `done(FinishReason::Stop)`,
    ///   and cancel the request (the scheduler knows stop tokens, not stop strings).
    /// - Otherwise send the safe text ([`Active::send_safe_text`]); when the client has gone
    ///   (dropped its [`RequestStream`]), cancel the request to free its slot and cache.
    ///
    /// Book: week 2, chapter 11 (serving), task 2.
    pub(crate) fn token(&mut self, id: u64, token: u32) {
        todo!("chapter 11, task 2: time and count the token, detokenize it, stop at a stop string or send the safe text, cancel when the client has gone")
    }
}
