//! `tiny-llm serve`: the model on an engine thread behind the HTTP server of chapter 11.

use crate::{default_model_path, KERNEL};
use anyhow::{anyhow, bail, Context, Result};
use continuous_batching::SchedulerConfig;
use decode::Tokenizer;
use quantized_matmul::{load_model, Quantization};
use serving::{serve as serve_http, AppState, EngineHandle, EngineLimits};
use std::{path::PathBuf, sync::Arc};

#[derive(clap::Args)]
pub struct ServeArgs {
    /// The address to listen on; 0.0.0.0 serves other machines too.
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
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
    /// Tokens through the model per step: one per decoding request, the rest for prefill.
    #[arg(long, default_value_t = 512)]
    token_budget: usize,
}

pub fn serve(args: ServeArgs) -> Result<()> {
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
    };
    let (quantization, group_size) = (args.quantization, args.quant_group_size);
    let model_dir = dir.clone();
    let engine = EngineHandle::start(
        move || load_model(&model_dir, quantization, group_size, KERNEL),
        Tokenizer::load(&dir)?,
        limits,
    )
    .map_err(|error| anyhow!("cannot load the model in {}: {error}", dir.display()))?;
    let state = AppState {
        engine,
        tokenizer: Arc::new(tokenizer),
        model_name: model_name.clone(),
    };
    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    runtime.block_on(async {
        let address = format!("{}:{}", args.host, args.port);
        let listener = tokio::net::TcpListener::bind(&address)
            .await
            .with_context(|| {
                format!("cannot listen on {address} (is another server using the port? try --port)")
            })?;
        eprintln!("serving {model_name} on http://{address} (OpenAI API under /v1; Ctrl-C stops)");
        serve_http(listener, state)
            .await
            .context("the server failed")
    })
}
