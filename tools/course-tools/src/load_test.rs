//! `cargo xtask load-test`: starts the release server on a loopback port with the built-in
//! model and drives it with many concurrent clients (mixed streaming and whole answers, short and
//! long prompts) for a fixed time and at most a fixed number of requests. It reports requests/s,
//! latency and time-to-first-token percentiles, answers by class (5xx must be 0; 503 overloads
//! are counted apart), the engine's tokens/s, and the server's resident memory before and after
//! (flat when no KV cache or buffer leaks). It ends by sending SIGTERM and expects exit code 0.

use crate::{cargo, models};
use anyhow::{bail, Context, Result};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::{json, Value};
use std::{
    io::{BufRead, BufReader},
    path::Path,
    process::{Child, Command, Stdio},
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc, Mutex,
    },
    time::{Duration, Instant},
};

#[derive(Args)]
pub struct LoadTestArgs {
    /// Concurrent clients, each sending one request after another.
    #[arg(long, default_value_t = 64)]
    clients: usize,
    /// How long the clients send requests (requests in flight then finish).
    #[arg(long, default_value_t = 60)]
    duration_secs: u64,
    /// The most requests sent in all.
    #[arg(long, default_value_t = 5000)]
    max_requests: usize,
    /// Tokens generated per request.
    #[arg(long, default_value_t = 32)]
    max_tokens: usize,
    /// Options for `tiny-llm serve` (e.g. `--max-batch 32`), after `--`.
    #[arg(last = true)]
    serve_args: Vec<String>,
}

/// A short and a long prompt (about 20 and 200 tokens).
fn prompts() -> [String; 2] {
    let paragraph = "The river runs past the old mill, under the stone bridge and through the town, where children watch the boats and the baker opens his shop before dawn. ";
    [
        "Write one sentence about the sea.".to_string(),
        format!(
            "{}Summarize the text above in one sentence.",
            paragraph.repeat(6)
        ),
    ]
}

#[derive(Default)]
struct Tally {
    latencies: Vec<Duration>,
    first_tokens: Vec<Duration>,
    ok: usize,
    overloaded: usize,
    client_errors: usize,
    server_errors: usize,
    transport_errors: usize,
    first_failure: Option<String>,
}

pub fn run(args: LoadTestArgs) -> Result<()> {
    if args.clients == 0 || args.max_requests == 0 {
        bail!("--clients and --max-requests must be at least 1");
    }
    let model = models::ready_model_dir(None)?;
    let binary = build_server()?;
    let mut server = Server::start(&binary, &model, &args.serve_args)?;
    let base = format!("http://{}", server.address);
    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    let outcome = runtime.block_on(drive(&base, &args, &server));
    let stopped = server.stop();
    let (report, failed) = outcome?;
    stopped?;
    print!("{report}");
    if failed {
        bail!("requests failed under load, or the engine still held requests or cache afterwards (see above)");
    }
    Ok(())
}

fn build_server() -> Result<std::path::PathBuf> {
    eprintln!("building the release server (cargo build --release -p engine --features solutions)");
    let mut build = cargo::command();
    build.args([
        "build",
        "--quiet",
        "--release",
        "--package",
        "engine",
        "--features",
        "solutions",
        "--bin",
        "tiny-llm",
    ]);
    cargo::run(build, "building the release server")?;
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| cargo::workspace_root().join("target"));
    Ok(target.join("release").join("tiny-llm"))
}

struct Server {
    child: Child,
    address: String,
}

impl Server {
    /// Starts `tiny-llm serve` on 127.0.0.1 and a free port, and waits for its "serving" line.
    fn start(binary: &Path, model: &Path, extra: &[String]) -> Result<Self> {
        let mut child = Command::new(binary)
            .args([
                "serve",
                "--host",
                "127.0.0.1",
                "--port",
                "0",
                "--model-path",
            ])
            .arg(model)
            .args(extra)
            .stderr(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .with_context(|| format!("cannot start {}", binary.display()))?;
        let stderr = child.stderr.take().context("the server's stderr")?;
        let mut lines = BufReader::new(stderr).lines();
        let address = loop {
            let Some(line) = lines.next() else {
                let status = child.wait().context("waiting for the server")?;
                bail!("the server exited ({status}) before it served");
            };
            let line = line.context("reading the server's stderr")?;
            eprintln!("server: {line}");
            if let Some(rest) = line.split("http://").nth(1) {
                break rest
                    .split_whitespace()
                    .next()
                    .unwrap_or_default()
                    .to_string();
            }
        };
        // Keep draining its stderr so that the server never blocks on a full pipe.
        std::thread::spawn(move || {
            for line in lines.map_while(Result::ok) {
                eprintln!("server: {line}");
            }
        });
        Ok(Server { child, address })
    }

    fn rss_kib(&self) -> Result<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .context("reading the server's /proc/PID/status (the load test needs Linux)")?;
        status
            .lines()
            .find_map(|line| line.strip_prefix("VmRSS:"))
            .and_then(|value| value.split_whitespace().next()?.parse().ok())
            .context("no VmRSS in /proc/PID/status")
    }

    /// SIGTERM, then the exit code must be 0 (a graceful shutdown).
    fn stop(&mut self) -> Result<()> {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .context("cannot run kill")?;
        if !status.success() {
            bail!("kill -TERM {} failed", self.child.id());
        }
        let exit = self
            .child
            .wait()
            .context("waiting for the server to stop")?;
        if !exit.success() {
            bail!("the server exited with {exit} after SIGTERM, expected 0");
        }
        eprintln!("server stopped on SIGTERM with exit code 0");
        Ok(())
    }
}

async fn metric(client: &reqwest::Client, base: &str, name: &str) -> Result<f64> {
    let text = client
        .get(format!("{base}/metrics"))
        .send()
        .await?
        .text()
        .await?;
    text.lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .with_context(|| format!("/metrics has no {name}"))
}

/// Runs the clients; returns the report and whether anything failed.
async fn drive(base: &str, args: &LoadTestArgs, server: &Server) -> Result<(String, bool)> {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(args.clients)
        .build()
        .context("cannot build the HTTP client")?;
    // A warm-up wave first, one request per client at once: it grows MLX's buffer cache to the
    // working set of this concurrency, so that "before" already holds it and any growth after
    // it is a leak.
    let prompts = Arc::new(prompts());
    let warm = Arc::new(Mutex::new(Tally::default()));
    eprintln!("warm-up: {} requests at once", args.clients);
    let wave: Vec<_> = (0..args.clients)
        .map(|kind| {
            let (client, base, prompts, warm) = (
                client.clone(),
                base.to_string(),
                Arc::clone(&prompts),
                Arc::clone(&warm),
            );
            let max_tokens = args.max_tokens;
            tokio::spawn(async move {
                one_request(&client, &base, &prompts, kind, max_tokens, &warm).await
            })
        })
        .collect();
    for request in wave {
        request.await.context("a warm-up request panicked")?;
    }
    if warm.lock().expect("tally").ok != args.clients {
        bail!(
            "warm-up requests failed: {}",
            warm.lock()
                .expect("tally")
                .first_failure
                .clone()
                .unwrap_or_default()
        );
    }
    let rss_before = server.rss_kib()?;
    let tokens_before = metric(&client, base, "tiny_llm_generation_tokens_total").await?;

    let tally = Arc::new(Mutex::new(Tally::default()));
    let sent = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let deadline = started + Duration::from_secs(args.duration_secs);
    let progress = ProgressBar::new(args.duration_secs).with_style(
        ProgressStyle::with_template("{msg} [{bar:40}] {pos}/{len} s")
            .expect("a valid template")
            .progress_chars("=> "),
    );
    let mut clients = Vec::new();
    for client_index in 0..args.clients {
        let (client, base, prompts, tally, sent) = (
            client.clone(),
            base.to_string(),
            Arc::clone(&prompts),
            Arc::clone(&tally),
            Arc::clone(&sent),
        );
        let max_tokens = args.max_tokens;
        let max_requests = args.max_requests;
        clients.push(tokio::spawn(async move {
            while Instant::now() < deadline {
                let number = sent.fetch_add(1, Ordering::SeqCst);
                if number >= max_requests {
                    break;
                }
                one_request(
                    &client,
                    &base,
                    &prompts,
                    number + client_index,
                    max_tokens,
                    &tally,
                )
                .await;
            }
        }));
    }
    while clients.iter().any(|client| !client.is_finished()) {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let done = tally.lock().expect("tally").latencies.len();
        progress.set_position(started.elapsed().as_secs().min(args.duration_secs));
        progress.set_message(format!("{done} requests"));
    }
    progress.finish_and_clear();
    let elapsed = started.elapsed();
    let tokens_after = metric(&client, base, "tiny_llm_generation_tokens_total").await?;
    // Let the engine thread finish its bookkeeping before the gauges are read.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let running = metric(&client, base, "tiny_llm_requests_running").await?;
    let cache = metric(&client, base, "tiny_llm_kv_cache_bytes").await?;
    let rss_after = server.rss_kib()?;

    let mut tally = tally.lock().expect("tally");
    let Tally {
        latencies,
        first_tokens,
        ..
    } = &mut *tally;
    latencies.sort();
    first_tokens.sort();
    let answered = latencies.len();
    let mut report = format!(
        "\nload test: {} clients, {:.1} s, {answered} requests ({} streamed), max_tokens {}\n",
        args.clients,
        elapsed.as_secs_f64(),
        first_tokens.len(),
        args.max_tokens
    );
    report += &format!(
        "requests/s: {:.2}, generated tokens/s: {:.1}\n",
        answered as f64 / elapsed.as_secs_f64(),
        (tokens_after - tokens_before) / elapsed.as_secs_f64()
    );
    report += &format!(
        "latency ms: p50 {:.0}, p99 {:.0}; time to first token ms (streamed): p50 {:.0}, p99 {:.0}\n",
        percentile_ms(latencies, 0.50),
        percentile_ms(latencies, 0.99),
        percentile_ms(first_tokens, 0.50),
        percentile_ms(first_tokens, 0.99)
    );
    report += &format!(
        "answers: 200: {}, 503 overloaded: {}, other 4xx: {}, 5xx: {}, transport errors: {}\n",
        tally.ok,
        tally.overloaded,
        tally.client_errors,
        tally.server_errors,
        tally.transport_errors
    );
    if let Some(failure) = &tally.first_failure {
        report += &format!("first failure: {failure}\n");
    }
    report += &format!(
        "after the run: {running} requests running, {cache} bytes of KV cache\n\
         resident memory: {:.1} MiB before, {:.1} MiB after ({:+.1} MiB)\n",
        rss_before as f64 / 1024.0,
        rss_after as f64 / 1024.0,
        (rss_after as f64 - rss_before as f64) / 1024.0
    );
    let failed = tally.server_errors + tally.client_errors + tally.transport_errors > 0
        || running != 0.0
        || cache != 0.0;
    Ok((report, failed))
}

fn percentile_ms(sorted: &[Duration], fraction: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let index = ((sorted.len() - 1) as f64 * fraction).round() as usize;
    sorted[index].as_secs_f64() * 1e3
}

/// One chat completion: streamed when `kind` is even, with the long prompt every other pair.
async fn one_request(
    client: &reqwest::Client,
    base: &str,
    prompts: &[String; 2],
    kind: usize,
    max_tokens: usize,
    tally: &Mutex<Tally>,
) {
    let stream = kind.is_multiple_of(2);
    let prompt = &prompts[(kind / 2) % 2];
    let body = json!({
        "messages": [{"role": "user", "content": prompt}],
        "max_tokens": max_tokens,
        "temperature": 0.7,
        "seed": kind,
        "stream": stream,
    });
    let started = Instant::now();
    let outcome = async {
        let mut response = client
            .post(format!("{base}/v1/chat/completions"))
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body.to_string())
            .send()
            .await?;
        let status = response.status();
        let mut first_token = None;
        let mut text = String::new();
        while let Some(chunk) = response.chunk().await? {
            text.push_str(&String::from_utf8_lossy(&chunk));
            // The first event names the role; the second carries the first token.
            if stream && first_token.is_none() && text.matches("data: ").count() >= 2 {
                first_token = Some(started.elapsed());
            }
        }
        Ok::<_, reqwest::Error>((status, first_token, text))
    }
    .await;
    let latency = started.elapsed();
    let mut tally = tally.lock().expect("tally");
    match outcome {
        Ok((status, first_token, text)) => {
            let complete = if stream {
                text.contains("data: [DONE]")
            } else {
                serde_json::from_str::<Value>(&text)
                    .is_ok_and(|answer| answer["choices"][0]["finish_reason"].is_string())
            };
            let failure = || format!("{status}: {}", text.chars().take(300).collect::<String>());
            if status.is_success() && complete {
                tally.ok += 1;
                tally.latencies.push(latency);
                tally.first_tokens.extend(first_token);
            } else if status == reqwest::StatusCode::SERVICE_UNAVAILABLE {
                tally.overloaded += 1;
            } else if status.is_server_error() {
                tally.server_errors += 1;
                tally.first_failure.get_or_insert_with(failure);
            } else {
                tally.client_errors += 1;
                tally.first_failure.get_or_insert_with(failure);
            }
        }
        Err(error) => {
            tally.transport_errors += 1;
            tally
                .first_failure
                .get_or_insert_with(|| format!("transport: {error}"));
        }
    }
}
