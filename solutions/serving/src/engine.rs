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
        let limits = self.shared.limits;
        let prompt_tokens = params.prompt_tokens.len();
        if prompt_tokens == 0 {
            return Err(SubmitError::Invalid("the prompt has no tokens".into()));
        }
        if prompt_tokens.saturating_add(params.max_new_tokens) > limits.max_seq_len {
            return Err(SubmitError::Invalid(format!(
                "the prompt has {prompt_tokens} tokens and up to {} may be generated, more than the server's --max-seq-len {}: shorten the prompt or lower max_tokens",
                params.max_new_tokens, limits.max_seq_len
            )));
        }
        let capacity = limits.scheduler.max_running + limits.max_waiting;
        let admitted = self.shared.outstanding.fetch_update(
            Ordering::SeqCst,
            Ordering::SeqCst,
            |outstanding| (outstanding < capacity).then_some(outstanding + 1),
        );
        if admitted.is_err() {
            return Err(SubmitError::Busy);
        }
        let id = self.shared.next_id.fetch_add(1, Ordering::Relaxed);
        let (sink, chunks) = unbounded_channel();
        let command = Command::Submit {
            request: Request {
                id,
                prompt: params.prompt_tokens,
                max_new_tokens: params.max_new_tokens,
                sampling: params.sampling,
                stop_token_ids: Vec::new(), // the engine thread adds the model's EOS ids
                constraint: params.constraint,
                logprobs: params.logprobs,
            },
            stop: params.stop,
            sink,
            arrived: Instant::now(),
        };
        if self.commands.send(command).is_err() {
            self.shared.outstanding.fetch_sub(1, Ordering::SeqCst);
            return Err(SubmitError::Stopped);
        }
        Ok(RequestStream {
            id,
            prompt_tokens,
            chunks,
        })
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
        let safe = self.text.len() - held_back(&self.text, &self.stop);
        if safe > self.sent {
            let chunk = Chunk::Text(self.text[self.sent..safe].to_string());
            self.sent = safe;
            return self.sink.send(chunk).is_ok();
        }
        !self.sink.is_closed()
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
        let Some(active) = self.active.get_mut(&id) else {
            return;
        };
        let now = Instant::now();
        let metrics = &self.shared.metrics;
        match active.first_token {
            None => {
                active.first_token = Some(now);
                metrics
                    .time_to_first_token
                    .observe((now - active.arrived).as_secs_f64());
            }
            Some(_) => metrics
                .inter_token_latency
                .observe((now - active.last_token).as_secs_f64()),
        }
        metrics.generation_tokens.inc();
        active.last_token = now;
        active.generated += 1;
        match active.detokenizer.push(&self.tokenizer, token) {
            Ok(text) => active.text.push_str(&text),
            Err(error) => {
                let _ = active.sink.send(Chunk::Failed(error.to_string()));
                self.cancel(id);
                return;
            }
        }
        let stop_at = active
            .stop
            .iter()
            .filter_map(|stop| active.text.find(stop.as_str()))
            .min();
        if let Some(stop_at) = stop_at {
            active.text.truncate(stop_at);
            if active.text.len() > active.sent {
                let rest = active.text[active.sent..].to_string();
                let _ = active.sink.send(Chunk::Text(rest));
            }
            let _ = active.sink.send(active.done(FinishReason::Stop));
            self.cancel(id);
        } else if !active.send_safe_text() {
            // The client disconnected: stop generating for it and free its cache.
            self.cancel(id);
        }
    }
}
