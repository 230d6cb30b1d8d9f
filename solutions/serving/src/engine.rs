//! The engine thread: it owns the model and the scheduler, takes requests from a channel, runs
//! one scheduler step at a time, and streams each request's text back through its own channel.

use crate::{GenerateParams, Metrics, Timings, Usage};
use continuous_batching::{Event, FinishReason, Request, Scheduler, SchedulerConfig};
use decode::{ContextPolicy, StreamingDetokenizer, Tokenizer};
use kv_cache::Model;
use quantized_matmul::{quantization_of, weight_bytes, WeightBytes};
use std::{
    collections::HashMap,
    sync::{
        atomic::{AtomicU64, AtomicUsize, Ordering},
        mpsc, Arc, OnceLock,
    },
    time::Instant,
};
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver, UnboundedSender};

/// How the engine thread runs.
#[derive(Clone, Copy, Debug)]
pub struct EngineLimits {
    pub scheduler: SchedulerConfig,
    /// Requests that may wait for a free slot; beyond them the server answers 503.
    pub max_waiting: usize,
    /// Prompt plus generated tokens of one request.
    pub max_seq_len: usize,
    /// What to do with a prompt that, with its `max_tokens`, does not fit `max_seq_len`.
    pub context_policy: ContextPolicy,
}

/// What the engine thread found out about the model it loaded, for every request's stats.
#[derive(Clone, Copy, Debug)]
pub struct ModelFacts {
    /// `(bits, group_size)` of the linear layers; `None` for float weights.
    pub quantization: Option<(i32, i32)>,
    pub weights: WeightBytes,
    /// Keys and values of one position in every layer, float32.
    pub kv_cache_bytes_per_token: usize,
}

/// What a request's stream carries.
#[derive(Clone, Debug, PartialEq)]
pub enum Chunk {
    /// New text (never part of a stop string).
    Text(String),
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

enum Command {
    Submit {
        request: Request,
        stop: Vec<String>,
        sink: UnboundedSender<Chunk>,
        arrived: Instant,
    },
}

struct Shared {
    limits: EngineLimits,
    model: OnceLock<ModelFacts>,
    /// Requests submitted and not finished.
    outstanding: AtomicUsize,
    next_id: AtomicU64,
    metrics: Metrics,
}

/// The server's side of the engine thread; cheap to clone into every handler.
#[derive(Clone)]
pub struct EngineHandle {
    commands: mpsc::Sender<Command>,
    shared: Arc<Shared>,
}

impl EngineHandle {
    /// Starts the engine thread on the model `load` builds there (MLX arrays stay on the thread
    /// that made them). Returns once the model is loaded, or with its loading error.
    pub fn start<F, E>(load: F, tokenizer: Tokenizer, limits: EngineLimits) -> Result<Self, String>
    where
        F: FnOnce() -> Result<Model, E> + Send + 'static,
        E: std::fmt::Display,
    {
        let shared = Arc::new(Shared {
            limits,
            model: OnceLock::new(),
            outstanding: AtomicUsize::new(0),
            next_id: AtomicU64::new(1),
            metrics: Metrics::new(),
        });
        let (commands, inbox) = mpsc::channel();
        let (ready, loaded) = mpsc::channel();
        let thread_shared = Arc::clone(&shared);
        std::thread::Builder::new()
            .name("engine".into())
            .spawn(move || {
                let model = match load() {
                    Ok(model) => model,
                    Err(error) => {
                        let _ = ready.send(Err(error.to_string()));
                        return;
                    }
                };
                let scheduler = match Scheduler::new(&model, limits.scheduler) {
                    Ok(scheduler) => scheduler,
                    Err(error) => {
                        let _ = ready.send(Err(error.what().to_string()));
                        return;
                    }
                };
                let config = model.config();
                let _ = thread_shared.model.set(ModelFacts {
                    quantization: quantization_of(&model),
                    weights: weight_bytes(&model),
                    kv_cache_bytes_per_token: (2
                        * config.num_hidden_layers
                        * config.num_key_value_heads
                        * config.head_dim) as usize
                        * std::mem::size_of::<f32>(),
                });
                let _ = ready.send(Ok(()));
                EngineLoop {
                    scheduler,
                    tokenizer,
                    eos: model.config().eos_token_ids.clone(),
                    active: HashMap::new(),
                    shared: thread_shared,
                }
                .run(inbox);
            })
            .map_err(|error| format!("cannot start the engine thread: {error}"))?;
        loaded
            .recv()
            .map_err(|_| "the engine thread stopped while loading".to_string())??;
        Ok(EngineHandle { commands, shared })
    }

    pub fn metrics(&self) -> &Metrics {
        &self.shared.metrics
    }

    pub fn limits(&self) -> EngineLimits {
        self.shared.limits
    }

    /// Set before [`EngineHandle::start`] returns.
    pub fn model_facts(&self) -> Option<ModelFacts> {
        self.shared.model.get().copied()
    }

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
    ///   `stop_token_ids` empty: the engine thread adds the model's EOS ids), the stop strings,
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

/// A request the engine thread is running.
struct Active {
    sink: UnboundedSender<Chunk>,
    stop: Vec<String>,
    detokenizer: StreamingDetokenizer,
    text: String,
    /// Bytes of `text` already sent.
    sent: usize,
    prompt_tokens: usize,
    generated: usize,
    arrived: Instant,
    first_token: Option<Instant>,
    last_token: Instant,
}

impl Active {
    fn done(&self, finish_reason: FinishReason) -> Chunk {
        let now = Instant::now();
        let first = self.first_token.unwrap_or(now);
        let decode_seconds = (self.last_token - first).as_secs_f64();
        Chunk::Done {
            finish_reason,
            usage: Usage {
                prompt_tokens: self.prompt_tokens,
                completion_tokens: self.generated,
                total_tokens: self.prompt_tokens + self.generated,
            },
            timings: Timings {
                time_to_first_token_ms: (first - self.arrived).as_secs_f64() * 1e3,
                decode_tokens_per_s: if self.generated > 1 && decode_seconds > 0.0 {
                    (self.generated - 1) as f64 / decode_seconds
                } else {
                    0.0
                },
                total_ms: (now - self.arrived).as_secs_f64() * 1e3,
            },
        }
    }

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

/// The bytes at the end of `text` that could start a stop string: the length of the longest
/// proper prefix of one of `stop` that `text` ends with (0 when none). Given.
fn held_back(text: &str, stop: &[String]) -> usize {
    stop.iter()
        .flat_map(|stop| stop.char_indices().skip(1).map(|(end, _)| &stop[..end]))
        .filter(|prefix| text.ends_with(prefix))
        .map(str::len)
        .max()
        .unwrap_or(0)
}

struct EngineLoop<'m> {
    scheduler: Scheduler<'m>,
    tokenizer: Tokenizer,
    eos: Vec<u32>,
    active: HashMap<u64, Active>,
    shared: Arc<Shared>,
}

impl EngineLoop<'_> {
    fn run(mut self, inbox: mpsc::Receiver<Command>) {
        loop {
            if self.scheduler.is_idle() {
                // Nothing to run: sleep until a request comes, or every handle is gone.
                match inbox.recv() {
                    Ok(command) => self.accept(command),
                    Err(_) => return,
                }
            }
            while let Ok(command) = inbox.try_recv() {
                self.accept(command);
            }
            match self.scheduler.step() {
                Ok(events) => events.into_iter().for_each(|event| self.route(event)),
                Err(error) => self.fail_all(error.what()),
            }
            let metrics = &self.shared.metrics;
            metrics.running.set(self.scheduler.running() as i64);
            metrics.waiting.set(self.scheduler.waiting() as i64);
            metrics
                .kv_cache_bytes
                .set(self.scheduler.cache_bytes() as i64);
        }
    }

    fn accept(&mut self, command: Command) {
        let Command::Submit {
            mut request,
            stop,
            sink,
            arrived,
        } = command;
        request.stop_token_ids = self.eos.clone();
        let (id, prompt_tokens) = (request.id, request.prompt.len());
        if let Err(error) = self.scheduler.add(request) {
            let _ = sink.send(Chunk::Rejected(error.what().to_string()));
            self.shared.outstanding.fetch_sub(1, Ordering::SeqCst);
            return;
        }
        self.shared
            .metrics
            .prompt_tokens
            .inc_by(prompt_tokens as u64);
        self.active.insert(
            id,
            Active {
                sink,
                stop,
                detokenizer: StreamingDetokenizer::new(),
                text: String::new(),
                sent: 0,
                prompt_tokens,
                generated: 0,
                arrived,
                first_token: None,
                last_token: arrived,
            },
        );
    }

    fn route(&mut self, event: Event) {
        match event {
            Event::Token { id, token } => self.token(id, token),
            Event::Finished { id, reason } => {
                if let Some(mut active) = self.active.remove(&id) {
                    if let Ok(rest) = active.detokenizer.finish(&self.tokenizer) {
                        active.text.push_str(&rest);
                    }
                    if active.text.len() > active.sent {
                        let rest = active.text[active.sent..].to_string();
                        let _ = active.sink.send(Chunk::Text(rest));
                    }
                    let _ = active.sink.send(active.done(reason));
                    self.finished();
                }
            }
        }
    }

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
    fn token(&mut self, id: u64, token: u32) {
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

    fn cancel(&mut self, id: u64) {
        if self.active.remove(&id).is_some() {
            if let Err(error) = self.scheduler.cancel(id) {
                self.fail_all(error.what());
                return;
            }
            self.finished();
        }
    }

    fn finished(&self) {
        self.shared.outstanding.fetch_sub(1, Ordering::SeqCst);
    }

    /// An MLX error in a step leaves the batch in an unknown state: fail every request and
    /// start over with an empty scheduler.
    fn fail_all(&mut self, message: &str) {
        for (id, active) in std::mem::take(&mut self.active) {
            let _ = active.sink.send(Chunk::Failed(message.to_string()));
            let _ = self.scheduler.cancel(id);
            self.finished();
        }
    }
}
