//! `tiny-llm`: load a model, tokenize the prompt, generate with the KV cache and the sampler,
//! stream the text. Run it with `cargo xtask run` (the solutions) or `cargo xtask run --mine`
//! (your chapters).

mod serve;
mod speculate;
mod stats;
mod unfinished;

use anyhow::{anyhow, bail, Context, Result};
use clap::{Parser, Subcommand};
use decode::{
    generate, ChatTemplate, ContextPolicy, GenerationOptions, Message, StopReason, Tokenizer,
};
use kv_cache::{CachedModel, KvCache};
use quantized_matmul::{load_model, quantization_of, weight_bytes, Kernel, Quantization};
use sampling::{Sampler, SamplingParams};
use serving::GenerationStats;
use stats::Timer;
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
    /// An argument of the chat template, as transformers' `apply_chat_template(**kwargs)`:
    /// `enable_thinking=false` turns Qwen3's thinking off, `date_string="26 Jul 2024"` sets
    /// Llama 3's date. VALUE is JSON, or else a string (repeatable).
    #[arg(long = "chat-template-arg", value_name = "KEY=VALUE", value_parser = parse_template_arg)]
    chat_template_args: Vec<(String, serde_json::Value)>,
    /// A model directory in the Hugging Face layout (config.json, model.safetensors, tokenizer.json),
    /// float or MLX-quantized. `cargo xtask run --model-path FILE.gguf` converts a GGUF into one.
    #[arg(long, value_name = "DIR", default_value_os_t = default_model_path())]
    model_path: PathBuf,
    /// Quantize a float model's linear layers as it loads: none, int4 or int8.
    #[arg(long, default_value = "none")]
    quantization: Quantization,
    /// Weights per scale and bias with --quantization: 32, 64 or 128, dividing every layer's
    /// input size [default: 32, the built-in model's GGUF blocks; at int4, 64 garbles SmolLM2's text].
    #[arg(long, value_name = "N")]
    quant_group_size: Option<i32>,
    /// The context budget: prompt plus generated tokens. Defaults to the model's context length
    /// (`max_position_embeddings` in config.json), which it may not exceed.
    #[arg(long, value_name = "N")]
    max_seq_len: Option<usize>,
    /// What to do with a prompt that does not fit the context budget:
    /// allow_context_stop (keep the prompt whole, stop generating when the context is full;
    /// refuse a prompt that fills it), reject (refuse a prompt that, with --max-new-tokens, does not
    /// fit), truncate_left / truncate_right (drop the oldest / newest prompt tokens so the prompt
    /// fits, then as allow_context_stop), reserve_generation (drop the oldest prompt tokens so that
    /// all --max-new-tokens fit).
    #[arg(long, value_name = "POLICY", default_value_t = ContextPolicy::AllowContextStop)]
    context_policy: ContextPolicy,
    /// Print the prompt the model reads (after the chat template and the context policy) before
    /// the generated text.
    #[arg(long)]
    echo: bool,
    /// Print one JSON object instead of streaming: the text, the prompt with --echo, and the stats.
    #[arg(long)]
    json: bool,
    /// Print token counts, the stop reason, speeds, context and memory to stderr.
    #[arg(long)]
    show_stats: bool,
    /// Speculative decoding with this draft model (same tokenizer; float or MLX-quantized): it
    /// proposes tokens, the model verifies them in one forward pass. Greedy output is unchanged.
    #[arg(long, value_name = "DIR")]
    draft_model: Option<PathBuf>,
    /// Speculative decoding without a draft model: `ngram` proposes what followed the last
    /// tokens earlier in the text (prompt lookup).
    #[arg(long, value_name = "KIND")]
    speculative: Option<speculate::SpeculativeKind>,
    /// Tokens drafted per step with --draft-model or --speculative
    /// [default: 4].
    #[arg(long, value_name = "K")]
    num_draft_tokens: Option<usize>,
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

fn parse_template_arg(text: &str) -> Result<(String, serde_json::Value), String> {
    match text.split_once('=') {
        Some((key, value)) if !key.is_empty() => {
            let value = serde_json::from_str(value).unwrap_or_else(|_| value.into());
            Ok((key.to_string(), value))
        }
        _ => Err(format!(
            "expected KEY=VALUE (like enable_thinking=false), got {text:?}"
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
    let sampling = SamplingParams {
        temperature: args.temperature,
        top_k: args.top_k,
        top_p: args.top_p,
        min_p: args.min_p,
        repetition_penalty: args.repetition_penalty,
        seed: args.seed,
    };
    let mut sampler = Sampler::new(sampling)
        // MLX's own message also names the line that raised it: noise for a bad flag.
        .map_err(|error| anyhow!("invalid sampling options: {}", error.what()))?;
    if args.quant_group_size.is_some() && args.quantization == Quantization::None {
        bail!("--quant-group-size only applies with --quantization int4 or int8");
    }
    if args.prompt.is_none() && args.messages.is_empty() {
        bail!("nothing to continue: give --prompt TEXT or --message ROLE:CONTENT");
    }
    let drafting = speculate::drafting(
        args.speculative,
        args.draft_model.clone(),
        args.num_draft_tokens,
    )?;
    let dir = &args.model_path;
    if dir.extension().is_some_and(|e| e == "gguf") {
        bail!(
            "{} is a GGUF file: `cargo xtask run --model-path {0}` converts it first (or `cargo xtask models convert {0}`)",
            dir.display()
        );
    }
    if !dir.join("config.json").is_file() {
        bail!(
            "no model in {} (no config.json): run `cargo xtask models fetch`, or pass --model-path DIR",
            dir.display()
        );
    }
    let group_size = args.quant_group_size.unwrap_or(32);
    let model = load_model(dir, args.quantization, group_size, KERNEL)
        .with_context(|| format!("cannot load the model in {}", dir.display()))?;
    let context_length = model.config().max_position_embeddings.max(1) as usize;
    let max_seq_len = args.max_seq_len.unwrap_or(context_length);
    if max_seq_len == 0 || max_seq_len > context_length {
        bail!("--max-seq-len {max_seq_len} is outside this model's context of 1 to {context_length} tokens");
    }
    let tokenizer = Tokenizer::load(dir)?;

    let mut messages = args.messages;
    if let Some(prompt) = &args.prompt {
        if args.chat || !messages.is_empty() {
            messages.push(Message::new("user", prompt));
        }
    }
    let text = match (&args.prompt, messages.is_empty()) {
        (Some(prompt), true) => prompt.clone(),
        // Template arguments go through the given renderer; your apply_chat_template takes none.
        _ if !args.chat_template_args.is_empty() => ChatTemplate::load(dir)?.render(
            &messages,
            true,
            &args.chat_template_args.into_iter().collect(),
        )?,
        _ => tokenizer
            .apply_chat_template(&messages, true)
            .context("--chat and --message need the model's chat template")?,
    };
    let prompt = tokenizer.encode(&text)?;
    if prompt.is_empty() {
        bail!("the prompt is empty: give --prompt some text");
    }
    let plan = args
        .context_policy
        .fit(prompt.len(), args.max_new_tokens, max_seq_len)
        .map_err(|error| {
            anyhow!("{error}: shorten the prompt, lower --max-new-tokens, raise --max-seq-len (at most {context_length}) or pick another --context-policy")
        })?;
    let dropped = prompt.len() - plan.kept.len();
    let prompt = &prompt[plan.kept.clone()];
    let echoed = if args.echo {
        Some(tokenizer.decode(prompt)?)
    } else {
        None
    };

    let options = GenerationOptions {
        max_new_tokens: plan.max_new_tokens,
        stop_strings: args.stop_strings,
        ignore_eos: false,
    };
    let mut stdout = std::io::stdout().lock();
    let mut write_error = None;
    let mut print = |text: &str| {
        if args.json {
            return;
        }
        let written = stdout
            .write_all(text.as_bytes())
            .and_then(|()| stdout.flush());
        if let Err(error) = written {
            write_error.get_or_insert(error);
        }
    };
    if let Some(echoed) = &echoed {
        print(echoed);
    }
    let (generation, timings, (cache_allocated, cache_active), speculation) = match &drafting {
        Some(drafting) => {
            let speculated = speculate::generate(
                &model, drafting, &tokenizer, prompt, options, sampling, &mut print,
            )?;
            (
                speculated.generation,
                speculated.timings,
                cache_bytes(&speculated.cache),
                Some(speculated.report),
            )
        }
        None => {
            let mut timer = Timer::start();
            let mut cached = CachedModel::new(&model);
            let generation = generate(
                &mut cached,
                &tokenizer,
                prompt,
                &options,
                &mut |logits, tokens| {
                    let token = sampler.sample(logits, tokens)?;
                    timer.token_chosen();
                    Ok(token)
                },
                &mut print,
            )?;
            let cache = cache_bytes(cached.cache());
            (generation, timer.finish(), cache, None)
        }
    };
    if let Some(error) = write_error {
        return Err(error).context("cannot write to stdout");
    }

    let stop_reason = match generation.stop_reason {
        StopReason::Eos => "eos",
        StopReason::StopString => "stop_string",
        StopReason::MaxTokens if plan.stops_at_context => "context_length",
        StopReason::MaxTokens => "max_tokens",
    };
    let (time_to_first_token_ms, prefill_tokens_per_s, decode_tokens_per_s) =
        stats::speeds(&timings, prompt.len());
    let weights = weight_bytes(&model);
    let quantization = quantization_of(&model);
    let stats = GenerationStats {
        prompt_tokens: prompt.len(),
        prompt_tokens_dropped: dropped,
        generated_tokens: generation.tokens.len(),
        stop_reason,
        time_to_first_token_ms,
        prefill_tokens_per_s,
        decode_tokens_per_s,
        total_time_ms: timings.total.as_secs_f64() * 1e3,
        max_seq_len,
        context_policy: args.context_policy.to_string(),
        tokens_left: max_seq_len - prompt.len() - generation.tokens.len(),
        kv_cache_allocated_bytes: cache_allocated,
        kv_cache_active_bytes: cache_active,
        quantization: quantization.map_or("none".into(), |(bits, _)| format!("int{bits}")),
        quant_group_size: quantization.map(|(_, group)| group),
        linear_weight_bytes: weights.in_memory,
        linear_weight_bytes_float32: weights.float32,
        peak_memory_bytes: mlx_rs::memory::peak_memory()?,
    };
    if args.json {
        let mut report = serde_json::json!({ "text": generation.text, "stats": stats });
        if let Some(speculation) = &speculation {
            report["speculative"] = serde_json::to_value(speculation)?;
        }
        if let Some(echoed) = echoed {
            report["prompt"] = echoed.into();
        }
        writeln!(stdout, "{report}").context("cannot write to stdout")?;
    } else {
        writeln!(stdout).context("cannot write to stdout")?;
    }
    if args.show_stats {
        eprintln!("{}", stats::report(&stats));
        if let Some(speculation) = &speculation {
            eprintln!("{}", stats::speculation_report(speculation));
        }
    }
    Ok(())
}

/// The cache's bytes: allocated (grown in steps) and holding keys and values.
fn cache_bytes(cache: &[KvCache]) -> (usize, usize) {
    cache.iter().fold((0, 0), |(allocated, active), layer| {
        let used = match layer.capacity() {
            0 => 0,
            capacity => layer.nbytes() / capacity as usize * layer.offset() as usize,
        };
        (allocated + layer.nbytes(), active + used)
    })
}
