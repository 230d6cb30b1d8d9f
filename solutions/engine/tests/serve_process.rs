//! `tiny-llm serve` as a process: it refuses to expose itself without a key, takes its key from
//! the environment, and stops on SIGTERM with exit code 0. On the tiny fixture model; built from
//! the solutions (`cargo test -p engine --features solutions`, which `cargo xtask
//! check-solutions` runs), since the stubs cannot serve.
#![cfg(all(feature = "solutions", unix))]

use std::{
    io::{BufRead, BufReader, Read, Write},
    net::TcpStream,
    path::PathBuf,
    process::{Child, Command, Stdio},
    sync::mpsc,
    time::{Duration, Instant},
};

fn fixture_model() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../models/fixtures/llama-tiny")
}

fn serve_command(args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_tiny-llm"));
    command
        .args(["serve", "--port", "0", "--model-path"])
        .arg(fixture_model())
        .args(args)
        .env_remove("TINY_LLM_API_KEY")
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    command
}

/// A running server, its address and the lines of its stderr.
struct Running {
    child: Child,
    address: String,
    stderr: mpsc::Receiver<String>,
}

fn start(mut command: Command) -> Running {
    let mut child = command.spawn().expect("start tiny-llm serve");
    let (lines, stderr) = mpsc::channel();
    let pipe = child.stderr.take().expect("stderr is piped");
    std::thread::spawn(move || {
        for line in BufReader::new(pipe).lines().map_while(Result::ok) {
            let _ = lines.send(line);
        }
    });
    // Owned by `Running` from here on, so that a failed start still kills and reaps the server.
    let mut running = Running {
        child,
        address: String::new(),
        stderr,
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    while running.address.is_empty() {
        let Ok(line) = running
            .stderr
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
        else {
            let _ = running.child.kill();
            let _ = running.child.wait();
            panic!("tiny-llm serve did not say where it serves within 60 s");
        };
        if let Some(rest) = line.split("http://").nth(1) {
            running.address = rest
                .split_whitespace()
                .next()
                .unwrap_or_default()
                .to_string();
        }
    }
    running
}

/// GET `path` (with a bearer `key`) and the answer's status line.
fn get(address: &str, path: &str, key: Option<&str>) -> String {
    let authorization = key.map_or(String::new(), |key| {
        format!("Authorization: Bearer {key}\r\n")
    });
    let answer = exchange(
        address,
        &format!(
            "GET {path} HTTP/1.1\r\nHost: localhost\r\n{authorization}Connection: close\r\n\r\n"
        ),
    );
    answer.lines().next().unwrap_or_default().to_string()
}

/// POST `body` (JSON) to `path`, and the whole answer.
fn post(address: &str, path: &str, body: &str) -> String {
    exchange(
        address,
        &format!(
            "POST {path} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        ),
    )
}

/// Sends `request` on a new connection and reads the answer to its end.
fn exchange(address: &str, request: &str) -> String {
    let mut stream = TcpStream::connect(address).expect("connect to the server");
    stream.write_all(request.as_bytes()).expect("send");
    let mut answer = String::new();
    stream.read_to_string(&mut answer).expect("read the answer");
    answer
}

impl Running {
    /// SIGTERM, then the exit status and what the server said meanwhile.
    fn terminate(mut self) -> (std::process::ExitStatus, String) {
        let pid = self.child.id().to_string();
        let sent = Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("run kill");
        assert!(sent.success(), "kill -TERM {pid}");
        let deadline = Instant::now() + Duration::from_secs(30);
        let status = loop {
            if let Some(status) = self.child.try_wait().expect("wait for the server") {
                break status;
            }
            assert!(
                Instant::now() < deadline,
                "the server still runs 30 s after SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(50));
        };
        let said: Vec<String> = self.stderr.try_iter().collect();
        (status, said.join("\n"))
    }
}

#[test]
fn sigterm_stops_the_server_with_exit_code_0() {
    let server = start(serve_command(&[]));
    assert!(get(&server.address, "/health", None).contains("200"));
    let (status, said) = server.terminate();
    assert!(
        status.success(),
        "after SIGTERM the server exits 0, got {status}: {said}"
    );
    assert!(said.contains("stopped"), "it says it stopped: {said:?}");
}

#[test]
fn the_api_key_comes_from_the_environment() {
    let mut command = serve_command(&[]);
    command.env("TINY_LLM_API_KEY", "sk-from-env");
    let server = start(command);
    let address = server.address.clone();
    assert!(
        get(&address, "/v1/models", None).contains("401"),
        "without the key"
    );
    assert!(
        get(&address, "/v1/models", Some("sk-wrong")).contains("401"),
        "a wrong key"
    );
    assert!(
        get(&address, "/v1/models", Some("sk-from-env")).contains("200"),
        "the key"
    );
    assert!(
        get(&address, "/health", None).contains("200"),
        "/health stays open"
    );
    let (status, said) = server.terminate();
    assert!(status.success(), "{status}: {said}");
}

#[test]
fn a_public_address_without_a_key_is_refused_in_one_line() {
    let output = serve_command(&["--host", "0.0.0.0"])
        .output()
        .expect("run tiny-llm serve");
    assert!(!output.status.success(), "it must not start");
    let said = String::from_utf8_lossy(&output.stderr);
    assert_eq!(said.trim().lines().count(), 1, "one line: {said}");
    for name in ["0.0.0.0", "--api-key", "--insecure-no-auth"] {
        assert!(said.contains(name), "the refusal names {name}: {said}");
    }
}

#[test]
fn speculation_on_the_dense_cache_is_refused_in_one_line() {
    let output = serve_command(&["--speculative", "ngram", "--kv-cache", "dense"])
        .output()
        .expect("run tiny-llm serve");
    assert!(!output.status.success(), "it must not start");
    let said = String::from_utf8_lossy(&output.stderr);
    assert_eq!(said.trim().lines().count(), 1, "one line: {said}");
    assert!(
        said.contains("--kv-cache paged"),
        "the refusal names the fix: {said}"
    );
}

/// The model drafting for itself: every greedy draft is accepted, and /metrics says so.
#[test]
fn a_speculative_server_reports_its_acceptance_in_metrics() {
    let model = fixture_model();
    let draft = model.to_string_lossy().into_owned();
    let server = start(serve_command(&[
        "--draft-model",
        &draft,
        "--num-draft-tokens",
        "3",
    ]));
    let answer = post(
        &server.address,
        "/v1/completions",
        r#"{"model": "llama-tiny", "prompt": "Hello there", "max_tokens": 12, "temperature": 0}"#,
    );
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let value = |metrics: &str, name: &str| -> Option<f64> {
        metrics
            .lines()
            .find_map(|line| line.strip_prefix(name)?.trim().parse().ok())
    };
    // The engine thread updates /metrics after the step that finished the request: wait for it.
    let deadline = Instant::now() + Duration::from_secs(10);
    let metrics = loop {
        let metrics = exchange(
            &server.address,
            "GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
        );
        let drafted = value(&metrics, "tiny_llm_speculative_draft_tokens_total ");
        if drafted.is_some_and(|drafted| drafted > 0.0) || Instant::now() > deadline {
            break metrics;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(
        value(&metrics, "tiny_llm_speculative_draft_tokens_total ").is_some_and(|d| d > 0.0),
        "no draft token counted within 10 s:\n{metrics}"
    );
    assert_eq!(
        value(&metrics, "tiny_llm_speculative_acceptance_rate "),
        Some(1.0),
        "a greedy model drafting for itself is always right:\n{metrics}"
    );
    let (status, said) = server.terminate();
    assert!(status.success(), "{status}: {said}");
}
