//! The engine thread: it owns the model and the scheduler, takes requests from a channel, runs
//! one scheduler step at a time, and streams each request's text back through its own channel.
//! Given: your code in `src/engine.rs` admits requests and routes each generated token.

use crate::{
    messages::Command, Chunk, Metrics, PromptTokensDetails, Timings, TokenLogprob, TopLogprob,
    Usage,
};
use continuous_batching::{
    Batcher, Event, FinishReason, KvPoolStats, Model, Scheduler, SchedulerConfig,
    SpeculationCounts, TokenLogprobs,
};
use decode::{ContextPolicy, StreamingDetokenizer, Tokenizer};
use quantized_matmul::{quantization_of, weight_bytes, WeightBytes};
use std::{
    collections::HashMap,
    sync::{
        atomic::{AtomicU64, AtomicUsize, Ordering},
        mpsc, Arc, OnceLock,
    },
    time::Instant,
};
use tokio::sync::mpsc::UnboundedSender;

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

/// What the handles and the engine thread share.
pub(crate) struct Shared {
    pub(crate) limits: EngineLimits,
    pub(crate) model: OnceLock<ModelFacts>,
    /// Requests submitted and not finished.
    pub(crate) outstanding: AtomicUsize,
    pub(crate) next_id: AtomicU64,
    pub(crate) metrics: Metrics,
}

/// The server's side of the engine thread; cheap to clone into every handler.
#[derive(Clone)]
pub struct EngineHandle {
    pub(crate) commands: mpsc::Sender<Command>,
    pub(crate) shared: Arc<Shared>,
}

/// Makes the scheduler the engine thread runs, over the model it loaded.
pub type MakeBatcher = Box<
    dyn for<'m> FnOnce(&'m Model, SchedulerConfig) -> mlx_rs::error::Result<Box<dyn Batcher + 'm>>
        + Send,
>;

impl EngineHandle {
    /// Starts the engine thread on the model `load` builds there (MLX arrays stay on the thread
    /// that made them), with chapter 10's scheduler. Returns once the model is loaded, or with
    /// its loading error.
    pub fn start<F, E>(load: F, tokenizer: Tokenizer, limits: EngineLimits) -> Result<Self, String>
    where
        F: FnOnce() -> Result<Model, E> + Send + 'static,
        E: std::fmt::Display,
    {
        let dense: MakeBatcher = Box::new(|model, config| {
            Scheduler::new(model, config).map(|scheduler| Box::new(scheduler) as Box<dyn Batcher>)
        });
        Self::start_with(load, dense, tokenizer, limits)
    }

    /// [`EngineHandle::start`] with the scheduler `make_batcher` makes (chapter 13's paged one,
    /// in the engine).
    pub fn start_with<F, E>(
        load: F,
        make_batcher: MakeBatcher,
        tokenizer: Tokenizer,
        limits: EngineLimits,
    ) -> Result<Self, String>
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
                let scheduler = match make_batcher(&model, limits.scheduler) {
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
                    kv_pool: KvPoolStats::default(),
                    speculation: SpeculationCounts::default(),
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
}

/// A request the engine thread is running.
pub(crate) struct Active {
    pub(crate) sink: UnboundedSender<Chunk>,
    pub(crate) stop: Vec<String>,
    pub(crate) detokenizer: StreamingDetokenizer,
    pub(crate) text: String,
    /// Bytes of `text` already sent.
    pub(crate) sent: usize,
    pub(crate) prompt_tokens: usize,
    /// Of them, those the prefix cache held (known from the first token on).
    pub(crate) cached_tokens: usize,
    pub(crate) generated: usize,
    pub(crate) arrived: Instant,
    pub(crate) first_token: Option<Instant>,
    pub(crate) last_token: Instant,
}

impl Active {
    /// The last chunk of a request that ran: its usage and timings.
    pub(crate) fn done(&self, finish_reason: FinishReason) -> Chunk {
        let now = Instant::now();
        let first = self.first_token.unwrap_or(now);
        let decode_seconds = (self.last_token - first).as_secs_f64();
        Chunk::Done {
            finish_reason,
            usage: Usage {
                prompt_tokens: self.prompt_tokens,
                completion_tokens: self.generated,
                total_tokens: self.prompt_tokens + self.generated,
                prompt_tokens_details: PromptTokensDetails {
                    cached_tokens: self.cached_tokens,
                },
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
}

/// The bytes at the end of `text` that could start a stop string: the length of the longest
/// proper prefix of one of `stop` that `text` ends with (0 when none). Given.
pub(crate) fn held_back(text: &str, stop: &[String]) -> usize {
    stop.iter()
        .flat_map(|stop| stop.char_indices().skip(1).map(|(end, _)| &stop[..end]))
        .filter(|prefix| text.ends_with(prefix))
        .map(str::len)
        .max()
        .unwrap_or(0)
}

/// A token's log-probabilities as the API reports them: each token as its own text and bytes.
fn token_logprob(tokenizer: &Tokenizer, token: u32, logprobs: &TokenLogprobs) -> TokenLogprob {
    // Decoding fails only on an id outside the vocabulary, which the model cannot choose.
    let text = |token: u32| tokenizer.decode(&[token]).unwrap_or_default();
    let token = text(token);
    TokenLogprob {
        bytes: token.as_bytes().to_vec(),
        token,
        logprob: logprobs.logprob,
        top_logprobs: logprobs
            .top
            .iter()
            .map(|&(alternative, logprob)| {
                let token = text(alternative);
                TopLogprob {
                    bytes: token.as_bytes().to_vec(),
                    token,
                    logprob,
                }
            })
            .collect(),
    }
}

/// The engine thread's state: the scheduler and the requests it runs.
pub(crate) struct EngineLoop<'m> {
    pub(crate) scheduler: Box<dyn Batcher + 'm>,
    pub(crate) tokenizer: Tokenizer,
    pub(crate) eos: Vec<u32>,
    pub(crate) active: HashMap<u64, Active>,
    pub(crate) shared: Arc<Shared>,
    /// The paged pool's counters at the last step, to add what each step changed to `/metrics`.
    pub(crate) kv_pool: KvPoolStats,
    /// The speculation counts at the last step, likewise.
    pub(crate) speculation: SpeculationCounts,
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
            if let Some(pool) = self.scheduler.kv_pool() {
                metrics.record_kv_pool(&self.kv_pool, &pool);
                self.kv_pool = pool;
            }
            if let Some(speculation) = self.scheduler.speculation() {
                metrics.record_speculation(&self.speculation, &speculation);
                self.speculation = speculation;
            }
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
                cached_tokens: 0,
                generated: 0,
                arrived,
                first_token: None,
                last_token: arrived,
            },
        );
    }

    fn route(&mut self, event: Event) {
        match event {
            Event::Token {
                id,
                token,
                logprobs,
            } => {
                if let Some(active) = self.active.get_mut(&id) {
                    if active.generated == 0 {
                        active.cached_tokens = self.scheduler.cached_tokens(id);
                    }
                    if let Some(logprobs) = logprobs {
                        let entry = token_logprob(&self.tokenizer, token, &logprobs);
                        let _ = active.sink.send(Chunk::Logprobs(vec![entry]));
                    }
                }
                self.token(id, token)
            }
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

    /// Forgets request `id` and cancels it in the scheduler; an id no longer active is ignored.
    pub(crate) fn cancel(&mut self, id: u64) {
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
