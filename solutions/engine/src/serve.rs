//! `tiny-llm serve`: the model on an engine thread behind the HTTP server of chapter 11.

use crate::{
    default_model_path,
    speculate::{self, Drafting, SpeculativeKind},
    KERNEL,
};
use anyhow::{anyhow, bail, Context, Result};
use constrained_decoding::{Constraint, Format, Grammar};
use continuous_batching::{Batcher, Scheduler, SchedulerConfig};
use decode::{ChatTemplate, ContextPolicy, Tokenizer};
use mlx_rs::error::Exception;
use paged_kv_cache::blocks_for;
use prefix_cache::{PagedConfig, PagedScheduler};
use quantized_matmul::{load_model, Quantization};
use serving::{
    check_exposure, protect, router, serve as serve_http, shutdown_signal, AppState, EngineHandle,
    EngineLimits, FormatCompiler, HeaderValue, MakeBatcher, ResponseFormat, ServerOptions,
    Shutdown,
};
use speculative_decoding::{BatchDrafting, BatchSpeculator, NgramDrafter};
use std::{
    net::{IpAddr, SocketAddr},
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

#[derive(clap::Args)]
pub struct ServeArgs {
    /// The address to listen on (an IP address); 0.0.0.0 serves other machines too, and then
    /// needs --api-key or --insecure-no-auth.
    #[arg(long, default_value = "127.0.0.1")]
    host: IpAddr,
    #[arg(long, default_value_t = 8000)]
    port: u16,
    /// A model directory in the Hugging Face layout, float or MLX-quantized.
    #[arg(long, value_name = "DIR", default_value_os_t = default_model_path())]
    model_path: PathBuf,
    /// Quantize a float model's linear layers as it loads: none, int4 or int8.
    #[arg(long, default_value = "none")]
    quantization: Quantization,
    /// Weights per scale and bias with --quantization (32, 64 or 128).
    #[arg(long, value_name = "N", default_value_t = 32)]
    quant_group_size: i32,
    /// Requests decoding together; more wait in a queue.
    #[arg(long, default_value_t = 16)]
    max_batch: usize,
    /// Requests that may wait for a slot; beyond them the server answers 503 with Retry-After.
    #[arg(long, default_value_t = 64)]
    max_waiting: usize,
    /// Prompt plus generated tokens of one request.
    #[arg(long, default_value_t = 4096)]
    max_seq_len: usize,
    /// What to do with a prompt that, with its max_tokens, exceeds --max-seq-len: reject (400,
    /// as OpenAI does), allow_context_stop, truncate_left, truncate_right or reserve_generation
    /// (`tiny-llm --help` explains each).
    #[arg(long, value_name = "POLICY", default_value_t = ContextPolicy::Reject)]
    context_policy: ContextPolicy,
    /// Tokens through the model per step: one per decoding request, the rest for prefill.
    #[arg(long, default_value_t = 512)]
    token_budget: usize,
    /// Where requests keep their keys and values: `paged` (one pool of 16-token blocks shared by
    /// every request, with a prefix cache; chapters 12-13) or `dense` (a batched cache as long as
    /// the longest request; chapter 10).
    #[arg(long, value_name = "LAYOUT", default_value = "paged")]
    kv_cache: KvLayout,
    /// Blocks of 16 positions in the paged pool, for every request together (default: room for
    /// --max-batch requests of 1024 tokens each).
    #[arg(long, value_name = "N")]
    kv_blocks: Option<usize>,
    /// Compute every prompt whole instead of reusing the blocks of earlier prompts that start
    /// the same way.
    #[arg(long)]
    no_prefix_cache: bool,
    /// Speculative decoding with this draft model (same tokenizer; float or MLX-quantized), a
    /// copy of its cache per request: every request verifies its own draft in the batch's one
    /// forward. Greedy output is unchanged. Needs --kv-cache paged.
    #[arg(long, value_name = "DIR")]
    draft_model: Option<PathBuf>,
    /// Speculative decoding without a draft model: `ngram` proposes what followed each
    /// request's last tokens earlier in its text (prompt lookup).
    #[arg(long, value_name = "KIND")]
    speculative: Option<SpeculativeKind>,
    /// Tokens drafted per request per step with --draft-model or --speculative [default: 4].
    #[arg(long, value_name = "K")]
    num_draft_tokens: Option<usize>,
    /// Require `Authorization: Bearer KEY` on every request but GET /health. The environment
    /// variable TINY_LLM_API_KEY does the same without showing the key to `ps`.
    #[arg(long, value_name = "KEY")]
    api_key: Option<String>,
    /// Serve a non-loopback --host without an API key anyway.
    #[arg(long)]
    insecure_no_auth: bool,
    /// Let browser pages from this origin (e.g. http://localhost:3000) call the API; without it
    /// the server sends no CORS headers.
    #[arg(long, value_name = "ORIGIN")]
    cors_origin: Option<String>,
    /// The largest request body in bytes (413 beyond it).
    #[arg(long, value_name = "BYTES", default_value_t = ServerOptions::default().max_body_bytes)]
    max_body_bytes: usize,
    /// Seconds a client may take to send its request headers, and then its body (408).
    #[arg(long, value_name = "SECS", default_value_t = ServerOptions::default().read_timeout.as_secs())]
    read_timeout_secs: u64,
    /// On SIGTERM or Ctrl-C, seconds the requests in flight may take to finish before they are
    /// cancelled.
    #[arg(long, value_name = "SECS", default_value_t = ServerOptions::default().shutdown_grace.as_secs())]
    shutdown_grace_secs: u64,
}

impl ServeArgs {
    /// The guards of the server, from the flags and TINY_LLM_API_KEY.
    fn options(&self) -> Result<ServerOptions> {
        let api_key = match &self.api_key {
            Some(key) => Some(key.clone()),
            None => std::env::var("TINY_LLM_API_KEY").ok(),
        };
        if api_key.as_deref().is_some_and(|key| key.trim().is_empty()) {
            bail!("the API key (--api-key or TINY_LLM_API_KEY) is empty: give a secret, or leave both unset");
        }
        check_exposure(self.host, api_key.is_some(), self.insecure_no_auth)
            .map_err(|message| anyhow!(message))?;
        let cors_origin = self
            .cors_origin
            .as_deref()
            .map(|origin| {
                HeaderValue::from_str(origin).map_err(|_| {
                    anyhow!("--cors-origin {origin:?} is not a valid origin: give one like http://localhost:3000")
                })
            })
            .transpose()?;
        if self.read_timeout_secs == 0 {
            bail!("--read-timeout-secs must be at least 1");
        }
        Ok(ServerOptions {
            api_key,
            cors_origin,
            max_body_bytes: self.max_body_bytes,
            read_timeout: Duration::from_secs(self.read_timeout_secs),
            shutdown_grace: Duration::from_secs(self.shutdown_grace_secs),
        })
    }
}

/// Where the server's requests keep their keys and values.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
enum KvLayout {
    Paged,
    Dense,
}

pub fn serve(args: ServeArgs) -> Result<()> {
    // Refuse a bad configuration before the model loads.
    let options = args.options()?;
    let dir = args.model_path;
    if !dir.join("config.json").is_file() {
        bail!(
            "no model in {} (no config.json): run `cargo xtask models fetch`, or pass --model-path DIR",
            dir.display()
        );
    }
    let model_name = dir
        .file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_else(|| "model".into());
    let tokenizer = Tokenizer::load(&dir)?;
    let limits = EngineLimits {
        scheduler: SchedulerConfig {
            max_running: args.max_batch,
            token_budget: args.token_budget,
            prefill_chunk: args.token_budget.min(256),
        },
        max_waiting: args.max_waiting,
        max_seq_len: args.max_seq_len,
        context_policy: args.context_policy,
    };
    let (quantization, group_size) = (args.quantization, args.quant_group_size);
    let model_dir = dir.clone();
    let kv_blocks = args
        .kv_blocks
        .unwrap_or_else(|| blocks_for(args.max_batch * 1024));
    if kv_blocks == 0 {
        bail!("--kv-blocks must be at least 1");
    }
    let prefix_caching = !args.no_prefix_cache;
    let drafting = speculate::drafting(
        args.speculative,
        args.draft_model.clone(),
        args.num_draft_tokens,
    )?;
    let make_batcher: MakeBatcher = match args.kv_cache {
        KvLayout::Dense if drafting.is_some() => bail!(
            "speculative decoding in the server needs --kv-cache paged: each request rewinds its own blocks past the draft tokens the model rejects, which the dense batch's aligned rows cannot"
        ),
        KvLayout::Dense => Box::new(|model, config| {
            Scheduler::new(model, config).map(|scheduler| Box::new(scheduler) as Box<dyn Batcher>)
        }),
        KvLayout::Paged => Box::new(move |model, scheduler| {
            let config = PagedConfig {
                scheduler,
                num_blocks: kv_blocks,
                prefix_caching,
            };
            let scheduler = PagedScheduler::new(model, config)?;
            let Some((drafting, k)) = drafting else {
                return Ok(Box::new(scheduler) as Box<dyn Batcher>);
            };
            let speculator = BatchSpeculator::new(
                batch_drafting(drafting)?,
                k,
                model.config().vocab_size,
            )
            .map_err(|error| Exception::custom(error.to_string()))?;
            Ok(Box::new(scheduler.with_speculator(Box::new(speculator))))
        }),
    };
    let engine = EngineHandle::start_with(
        move || load_model(&model_dir, quantization, group_size, KERNEL),
        make_batcher,
        Tokenizer::load(&dir)?,
        limits,
    )
    .map_err(|error| anyhow!("cannot load the model in {}: {error}", dir.display()))?;
    let state = AppState {
        engine,
        tokenizer: Arc::new(tokenizer),
        model_name: model_name.clone(),
        formats: Some(response_formats(&dir)?),
        chat_template: ChatTemplate::load(&dir).ok().map(Arc::new),
    };
    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    runtime.block_on(async {
        let address = SocketAddr::new(args.host, args.port);
        let listener = tokio::net::TcpListener::bind(address)
            .await
            .with_context(|| {
                format!("cannot listen on {address} (is another server using the port? try --port)")
            })?;
        // Before the address is out: a SIGTERM from then on shuts down gracefully.
        let shutdown = shutdown_signal();
        // With --port 0 the system picks the port: say which (the load test reads this line).
        let address = listener.local_addr().unwrap_or(address);
        let auth = if options.api_key.is_some() { "API key required" } else { "no API key" };
        eprintln!("serving {model_name} on http://{address} (OpenAI API under /v1; {auth}; Ctrl-C stops)");
        let app = protect(router(state), &options);
        let ended = serve_http(listener, app, &options, shutdown)
            .await
            .context("the server failed")?;
        match ended {
            Shutdown::Drained => eprintln!("stopped: every request in flight finished"),
            Shutdown::Cancelled { connections } => eprintln!(
                "stopped: the {} s grace period ran out, {connections} connections cut (--shutdown-grace-secs)",
                options.shutdown_grace.as_secs()
            ),
        }
        Ok(())
    })
}

/// The server's drafting, made on the engine thread (where MLX arrays must stay).
fn batch_drafting(drafting: Drafting) -> mlx_rs::error::Result<BatchDrafting<'static>> {
    match drafting {
        Drafting::Ngram => Ok(BatchDrafting::Ngram(NgramDrafter::default())),
        Drafting::Model(dir) => {
            let model = load_model(&dir, Quantization::None, 32, KERNEL).map_err(|error| {
                Exception::custom(format!(
                    "cannot load the draft model in {}: {error}",
                    dir.display()
                ))
            })?;
            // It serves until the process ends, like the target: leaked, so that the
            // scheduler, which borrows it, may outlive this function.
            Ok(BatchDrafting::Model(Box::leak(Box::new(model))))
        }
    }
}

/// `response_format`s compiled by chapter 15's grammars over the model's vocabulary: built once
/// (the token trie), each request's schema compiled in milliseconds.
fn response_formats(dir: &Path) -> Result<FormatCompiler> {
    let config = kv_cache::ModelConfig::from_file(&dir.join("config.json"))
        .with_context(|| format!("cannot read {}", dir.join("config.json").display()))?;
    let vocab_size = usize::try_from(config.vocab_size)
        .with_context(|| format!("vocab_size {} in config.json", config.vocab_size))?;
    let grammar = Grammar::from_tokenizer_json(
        &dir.join("tokenizer.json"),
        &config.eos_token_ids,
        vocab_size,
    )?;
    Ok(Arc::new(move |format: &ResponseFormat| {
        let format = match format {
            ResponseFormat::Text => return Err("free text needs no constraint".into()),
            ResponseFormat::JsonObject => Format::JsonObject,
            ResponseFormat::Lark(grammar) => Format::Lark(grammar.clone()),
            ResponseFormat::JsonSchema { json_schema } => Format::JsonSchema(
                json_schema
                    .schema
                    .clone()
                    .unwrap_or_else(|| serde_json::json!({})),
            ),
        };
        grammar
            .compile(&format)
            .map(|state| Constraint::new(state).into())
            .map_err(|error| error.to_string())
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use mlx_rs::Array;
    use serde_json::{json, Value};
    use serving::{tool_plan, Tool, ToolChoice};

    /// The tiny Qwen3 fixture, with `<tool_call>` and `</tool_call>` added to its tokenizer as
    /// one token each and not special, as Qwen2.5's and Qwen3's tokenizer.json have them; their
    /// ids follow the vocabulary, and the config's `vocab_size` grows to hold them.
    fn qwen_with_tool_call_tokens(dir: &Path) -> (u32, u32) {
        let fixture =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../models/fixtures/qwen3-tiny");
        let read = |name: &str| -> Value {
            serde_json::from_str(&std::fs::read_to_string(fixture.join(name)).expect(name))
                .expect(name)
        };
        let mut config = read("config.json");
        let open = config["vocab_size"].as_u64().expect("vocab_size") as u32;
        config["vocab_size"] = json!(open + 2);
        let mut tokenizer = read("tokenizer.json");
        let added = tokenizer["added_tokens"]
            .as_array_mut()
            .expect("added_tokens");
        for (id, content) in [(open, "<tool_call>"), (open + 1, "</tool_call>")] {
            added.push(json!({"id": id, "content": content, "single_word": false,
                "lstrip": false, "rstrip": false, "normalized": false, "special": false}));
        }
        for (name, value) in [("config.json", config), ("tokenizer.json", tokenizer)] {
            std::fs::write(dir.join(name), value.to_string()).expect(name);
        }
        (open, open + 1)
    }

    /// Qwen writes `<tool_call>` as one token, where the tools' grammar spells it as text: a
    /// required call must be able to open and close with those single tokens (llguidance matches
    /// a non-special token by its text), or a Qwen model would be forced to spell the marker in
    /// pieces it never writes. Walks a whole call, the model's own tokenization of it.
    #[test]
    fn a_required_call_opens_and_closes_with_qwens_single_tool_call_tokens() {
        let dir = tempfile::tempdir().expect("temporary directory");
        let (open, close) = qwen_with_tool_call_tokens(dir.path());
        let vocab_size = close as usize + 1;
        let tools: Vec<Tool> = serde_json::from_value(json!([{"type": "function", "function": {
            "name": "get_weather", "parameters": {"type": "object",
            "properties": {"city": {"type": "string"}}, "required": ["city"]}}}]))
        .expect("tools");
        let required = ToolChoice::Mode("required".into());
        let plan = tool_plan(&Some(tools), &Some(required), None)
            .expect("a valid plan")
            .expect("a call to make");
        let grammar = plan
            .hermes_grammar()
            .expect("a required call has a grammar");
        let constraint = response_formats(dir.path()).expect("the vocabulary's grammar")(
            &ResponseFormat::Lark(grammar),
        )
        .expect("the tools' grammar compiles");

        let tokenizer = tokenizers::Tokenizer::from_file(dir.path().join("tokenizer.json"))
            .expect("the tokenizer with the added tokens");
        let answer = "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}\n</tool_call>";
        let ids = tokenizer
            .encode(answer, false)
            .expect("encodes")
            .get_ids()
            .to_vec();
        assert_eq!(ids.first(), Some(&open), "{ids:?}");
        assert_eq!(ids.last(), Some(&close), "{ids:?}");
        let logits = Array::zeros::<f32>(&[vocab_size as i32]).expect("logits");
        for (step, &id) in ids.iter().enumerate() {
            let masked = constraint.mask(&logits).expect("a mask");
            assert!(
                masked.as_slice::<f32>()[id as usize].is_finite(),
                "token {step} ({id}, {:?}) is not allowed after {:?}",
                tokenizer.decode(&[id], false),
                tokenizer.decode(&ids[..step], false)
            );
            constraint.advance(id).expect("the grammar takes it");
        }
        let config =
            kv_cache::ModelConfig::from_file(&dir.path().join("config.json")).expect("the config");
        let masked = constraint.mask(&logits).expect("a mask");
        let end = config.eos_token_ids[0] as usize;
        assert!(
            masked.as_slice::<f32>()[end].is_finite(),
            "after the call, the end of the answer is allowed"
        );
    }
}
