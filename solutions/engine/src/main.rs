//! `tiny-llm`: load a model, tokenize the prompt, generate with the KV cache and the sampler,
//! stream the text. Run it with `cargo xtask run` (the solutions) or `cargo xtask run --mine`
//! (your chapters).

mod serve;
mod stats;
mod unfinished;

use anyhow::{anyhow, bail, Context, Result};
use clap::{Parser, Subcommand};
use decode::{generate, GenerationOptions, Message, Tokenizer};
use kv_cache::CachedModel;
use quantized_matmul::{load_model, weight_bytes, Kernel, Quantization};
use sampling::{Sampler, SamplingParams};
use stats::Stats;
use std::{
    io::Write,
    path::{Path, PathBuf},
};

#[derive(Parser)]
#[command(
    name = "tiny-llm",
    about = "Generate text with the engine built in this course"
)]
#[command(args_conflicts_with_subcommands = true)]
struct Args {
    #[command(subcommand)]
    command: Option<Command>,
    /// The text to continue (or, with --chat, the user's message).
    #[arg(long)]
    prompt: Option<String>,
    /// Wrap the prompt in the model's chat template as a user message.
    #[arg(long)]
    chat: bool,
    /// One turn of the conversation, `role:content` (repeatable, in order; implies --chat).
    #[arg(long = "message", value_name = "ROLE:CONTENT", value_parser = parse_message)]
    messages: Vec<Message>,
    /// Stop after this many generated tokens.
    #[arg(long, default_value_t = 128)]
    max_new_tokens: usize,
    /// 0 is greedy: always the most likely token.
    #[arg(long, default_value_t = 0.0, allow_negative_numbers = true)]
    temperature: f32,
    /// Keep only the k most likely tokens.
    #[arg(long)]
    top_k: Option<usize>,
    /// Keep the fewest most likely tokens whose probabilities sum to this, in (0, 1].
    #[arg(long, allow_negative_numbers = true)]
    top_p: Option<f32>,
    /// Keep the tokens at least this times as likely as the most likely one, in [0, 1].
    #[arg(long, allow_negative_numbers = true)]
    min_p: Option<f32>,
    /// Above 1 makes the tokens seen so far less likely.
    #[arg(long, allow_negative_numbers = true)]
    repetition_penalty: Option<f32>,
    /// Seeds the sampler: the same seed and flags give the same text.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Stop when the text contains this (repeatable; the stop string is not printed).
    #[arg(long = "stop", value_name = "TEXT")]
    stop_strings: Vec<String>,
    /// A model directory in the Hugging Face layout (config.json, model.safetensors, tokenizer.json),
    /// float or MLX-quantized.
    #[arg(long, value_name = "DIR", default_value_os_t = default_model_path())]
    model_path: PathBuf,
    /// Quantize a float model's linear layers as it loads: none, int4 or int8.
    #[arg(long, default_value = "none")]
    quantization: Quantization,
    /// Weights per scale and bias with --quantization: 32, 64 or 128, dividing every layer's
    /// input size. 32 matches the built-in model's GGUF blocks; at int4, 64 garbles SmolLM2's text.
    #[arg(long, value_name = "N", default_value_t = 32)]
    quant_group_size: i32,
    /// Print token counts, the stop reason and speeds to stderr.
    #[arg(long)]
    show_stats: bool,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the model over HTTP: OpenAI-compatible /v1 API, /generate, /health, /metrics.
    Serve(serve::ServeArgs),
}

/// The built-in model that `cargo xtask models fetch` writes under the workspace's models/.
pub(crate) fn default_model_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .expect("solutions/engine lies two folders below the workspace root")
        .join("models/smollm2-135m-instruct")
}

fn parse_message(text: &str) -> Result<Message, String> {
    match text.split_once(':') {
        Some((role, content)) if !role.is_empty() => Ok(Message::new(role, content)),
        _ => Err(format!(
            "expected ROLE:CONTENT (like user:Hello), got {text:?}"
        )),
    }
}

/// The solutions run on MLX's fused quantized kernel; `--mine` on your chapter 9 code.
pub(crate) const KERNEL: Kernel = if cfg!(feature = "solutions") {
    Kernel::Mlx
} else {
    Kernel::Course
};

fn main() {
    unfinished::explain_todo_panics();
    if let Err(error) = run(Args::parse()) {
        // The chain of contexts reads as one sentence; a backtrace would only bury it.
        eprintln!("error: {error:#}");
        std::process::exit(1);
    }
}

fn run(args: Args) -> Result<()> {
    if let Some(Command::Serve(serve_args)) = args.command {
        return serve::serve(serve_args);
    }
    // Checked first, so that a bad flag fails before the model loads.
    let mut sampler = Sampler::new(SamplingParams {
        temperature: args.temperature,
        top_k: args.top_k,
        top_p: args.top_p,
        min_p: args.min_p,
        repetition_penalty: args.repetition_penalty,
        seed: args.seed,
    })
    // MLX's own message also names the line that raised it: noise for a bad flag.
    .map_err(|error| anyhow!("invalid sampling options: {}", error.what()))?;
    let dir = &args.model_path;
    if !dir.join("config.json").is_file() {
        bail!(
            "no model in {} (no config.json): run `cargo xtask models fetch`, or pass --model-path DIR",
            dir.display()
        );
    }
    let model = load_model(dir, args.quantization, args.quant_group_size, KERNEL)
        .with_context(|| format!("cannot load the model in {}", dir.display()))?;
    let tokenizer = Tokenizer::load(dir)?;

    let mut messages = args.messages;
    if let Some(prompt) = &args.prompt {
        if args.chat || !messages.is_empty() {
            messages.push(Message::new("user", prompt));
        }
    }
    let text = match (&args.prompt, messages.is_empty()) {
        (None, true) => bail!("nothing to continue: give --prompt TEXT or --message ROLE:CONTENT"),
        (Some(prompt), true) => prompt.clone(),
        (_, false) => tokenizer
            .apply_chat_template(&messages, true)
            .context("--chat and --message need the model's chat template")?,
    };
    let prompt = tokenizer.encode(&text)?;

    let options = GenerationOptions {
        max_new_tokens: args.max_new_tokens,
        stop_strings: args.stop_strings,
        ignore_eos: false,
    };
    let mut stats = Stats::start(prompt.len());
    let mut stdout = std::io::stdout().lock();
    let mut write_error = None;
    let mut cached = CachedModel::new(&model);
    let generation = generate(
        &mut cached,
        &tokenizer,
        &prompt,
        &options,
        &mut |logits, tokens| {
            let token = sampler.sample(logits, tokens)?;
            stats.token_chosen();
            Ok(token)
        },
        &mut |chunk| {
            let written = stdout
                .write_all(chunk.as_bytes())
                .and_then(|()| stdout.flush());
            if let Err(error) = written {
                write_error.get_or_insert(error);
            }
        },
    )?;
    if let Some(error) = write_error {
        return Err(error).context("cannot write to stdout");
    }
    writeln!(stdout).context("cannot write to stdout")?;
    if args.show_stats {
        let cache_bytes = cached.cache().iter().map(|layer| layer.nbytes()).sum();
        eprintln!(
            "{}",
            stats.report(&generation, &weight_bytes(&model), cache_bytes)
        );
    }
    Ok(())
}
