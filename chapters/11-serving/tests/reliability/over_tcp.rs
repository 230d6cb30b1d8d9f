//! Over TCP: slow clients, vanishing clients, shutdown.

use crate::harness::{limits, start_with, within, TestServer};
use serde_json::{json, Value};
use serving::{serve, EngineHandle, EngineLimits, ServerOptions, Shutdown};
use std::{
    io,
    net::{Ipv4Addr, SocketAddr},
    time::{Duration, Instant},
};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
    sync::oneshot,
    task::JoinHandle,
};

/// The tiny model's greedy continuation of "The" meets no EOS in its first 1500 tokens: a
/// request that runs for seconds.
const LONG_PROMPT: &str = "The";
const LONG_TOKENS: usize = 1000;

struct LiveServer {
    address: SocketAddr,
    engine: EngineHandle,
    stop: Option<oneshot::Sender<()>>,
    served: JoinHandle<io::Result<Shutdown>>,
}

async fn live(limits: EngineLimits, options: ServerOptions) -> LiveServer {
    let TestServer { engine, app } = start_with(limits, &options);
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .await
        .expect("a loopback port");
    let address = listener.local_addr().expect("the port's address");
    let (stop, stopped) = oneshot::channel::<()>();
    let served = tokio::spawn(async move {
        serve(listener, app, &options, async {
            let _ = stopped.await;
        })
        .await
    });
    LiveServer {
        address,
        engine,
        stop: Some(stop),
        served,
    }
}

/// An HTTP/1.1 request that closes its connection after the answer.
fn http_request(path: &str, body: &Value) -> Vec<u8> {
    let body = body.to_string();
    format!(
        "POST {path} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// Sends `request` and reads the whole answer (the server closes the connection after it).
async fn exchange(address: SocketAddr, request: &[u8]) -> String {
    let mut stream = TcpStream::connect(address)
        .await
        .expect("connect to the server");
    stream.write_all(request).await.expect("send the request");
    let mut answer = Vec::new();
    within("reading an answer", stream.read_to_end(&mut answer))
        .await
        .expect("read the answer");
    String::from_utf8_lossy(&answer).into_owned()
}

fn status_line(answer: &str) -> &str {
    answer.lines().next().unwrap_or("")
}

impl LiveServer {
    /// A short completion over a fresh connection succeeds, and quickly.
    async fn assert_serves(&self, during: &str) {
        let started = Instant::now();
        let answer = exchange(
            self.address,
            &http_request(
                "/v1/completions",
                &json!({"prompt": "The sea is", "max_tokens": 3, "temperature": 0}),
            ),
        )
        .await;
        assert!(
            status_line(&answer).contains("200"),
            "during {during}: {answer}"
        );
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "during {during} a short request took {:?}",
            started.elapsed()
        );
    }

    /// Waits until the engine runs nothing and holds no cache.
    async fn assert_idle_soon(&self, after: &str) {
        let deadline = Instant::now() + Duration::from_secs(10);
        let metrics = self.engine.metrics();
        while metrics.running.get() != 0 || metrics.kv_cache_bytes.get() != 0 {
            assert!(
                Instant::now() < deadline,
                "10 s after {after}, {} requests still run and {} bytes of KV cache are held",
                metrics.running.get(),
                metrics.kv_cache_bytes.get()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn stop(&mut self) {
        let _ = self.stop.take().expect("stopped once").send(());
    }
}

/// Opens a long streamed completion and waits for its first bytes.
async fn open_long_stream(address: SocketAddr) -> TcpStream {
    let mut stream = TcpStream::connect(address)
        .await
        .expect("connect to the server");
    let body =
        json!({"prompt": LONG_PROMPT, "max_tokens": LONG_TOKENS, "temperature": 0, "stream": true});
    stream
        .write_all(&http_request("/v1/completions", &body))
        .await
        .expect("send the request");
    let mut first = [0u8; 256];
    let read = within("the stream's first bytes", stream.read(&mut first))
        .await
        .expect("read the stream");
    assert!(
        String::from_utf8_lossy(&first[..read]).starts_with("HTTP/1.1 200"),
        "the long stream should start with 200: {:?}",
        String::from_utf8_lossy(&first[..read])
    );
    stream
}

#[tokio::test(flavor = "multi_thread")]
async fn slow_header_and_body_senders_are_cut_off_without_stalling_others() {
    let options = ServerOptions {
        read_timeout: Duration::from_secs(1),
        ..ServerOptions::default()
    };
    let server = live(limits(4, 2048), options).await;

    // Half a request head, then nothing: hyper closes the connection after the read timeout.
    let mut slow_head = TcpStream::connect(server.address).await.expect("connect");
    slow_head
        .write_all(b"POST /v1/completions HTTP/1.1\r\nHost: localhost\r\n")
        .await
        .expect("send half a head");
    // A whole head, then 10 of the 100 body bytes it announced.
    let mut slow_body = TcpStream::connect(server.address).await.expect("connect");
    slow_body
        .write_all(b"POST /v1/completions HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"prompt\":")
        .await
        .expect("send part of a body");

    server.assert_serves("two slow senders").await;

    let started = Instant::now();
    let mut answer = Vec::new();
    let _ = within(
        "the slow head's connection closing",
        slow_head.read_to_end(&mut answer),
    )
    .await;
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "the slow head held its connection for {:?}",
        started.elapsed()
    );
    let mut answer = Vec::new();
    let _ = within("the slow body's answer", slow_body.read_to_end(&mut answer)).await;
    let answer = String::from_utf8_lossy(&answer);
    assert!(
        status_line(&answer).contains("408"),
        "a body that stalls gets 408: {answer}"
    );
    assert!(
        answer.contains("--read-timeout-secs"),
        "the 408 names the flag: {answer}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_request_head_over_the_limit_is_refused() {
    let server = live(limits(4, 2048), ServerOptions::default()).await;
    let huge = "x".repeat(100 << 10);
    let request = format!(
        "GET /health HTTP/1.1\r\nHost: localhost\r\nX-Padding: {huge}\r\nConnection: close\r\n\r\n"
    );
    // hyper answers 431 and closes with the rest of the head unread, so the kernel may reset the
    // connection before the answer is read: either way the head must not be served.
    let mut stream = TcpStream::connect(server.address).await.expect("connect");
    let _ = stream.write_all(request.as_bytes()).await;
    let mut answer = Vec::new();
    let _ = within("the answer to a huge head", stream.read_to_end(&mut answer)).await;
    let answer = String::from_utf8_lossy(&answer);
    assert!(
        answer.is_empty() || status_line(&answer).contains("431"),
        "a 100 KB header is refused: {:.200}",
        answer
    );
    server.assert_serves("after a huge header").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_slow_reader_does_not_stall_others_and_a_disconnect_frees_its_slot() {
    let server = live(limits(4, 2048), ServerOptions::default()).await;
    // Reads its first bytes, then nothing: the engine keeps generating for it meanwhile.
    let slow_reader = open_long_stream(server.address).await;
    server.assert_serves("a client that stopped reading").await;
    drop(slow_reader);
    server
        .assert_idle_soon("the client disconnected mid-stream")
        .await;
    let generated = server.engine.metrics().generation_tokens.get();
    assert!(
        generated < (LONG_TOKENS + 3) as u64,
        "the abandoned request should have been cancelled, not run to its {LONG_TOKENS} tokens ({generated} generated)"
    );
    server.assert_serves("after the disconnect").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn shutdown_lets_requests_in_flight_finish_and_refuses_new_ones() {
    let mut server = live(limits(4, 2048), ServerOptions::default()).await;
    let mut stream = TcpStream::connect(server.address).await.expect("connect");
    let body = json!({"prompt": LONG_PROMPT, "max_tokens": 40, "temperature": 0, "stream": true});
    stream
        .write_all(&http_request("/v1/completions", &body))
        .await
        .expect("send");
    let mut first = [0u8; 64];
    within("the first bytes", stream.read(&mut first))
        .await
        .expect("read");

    server.stop();
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(server.address).await.is_ok() {
        assert!(
            Instant::now() < deadline,
            "10 s after the shutdown signal the server still accepts connections"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut rest = Vec::new();
    within("the rest of the stream", stream.read_to_end(&mut rest))
        .await
        .expect("read");
    let rest = String::from_utf8_lossy(&rest);
    assert!(
        rest.contains("data: [DONE]"),
        "the request in flight runs to its end: {rest}"
    );
    let ended = within("serve returning", &mut server.served)
        .await
        .expect("the server task")
        .expect("serve");
    assert_eq!(ended, Shutdown::Drained);
}

#[tokio::test(flavor = "multi_thread")]
async fn shutdown_cancels_what_outlives_the_grace_period() {
    let options = ServerOptions {
        shutdown_grace: Duration::from_millis(300),
        ..ServerOptions::default()
    };
    let mut server = live(limits(4, 2048), options).await;
    let _stream = open_long_stream(server.address).await;
    let started = Instant::now();
    server.stop();
    let ended = within("serve returning", &mut server.served)
        .await
        .expect("the server task")
        .expect("serve");
    assert_eq!(ended, Shutdown::Cancelled { connections: 1 });
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "serve should return soon after the 300 ms grace, took {:?}",
        started.elapsed()
    );
    server
        .assert_idle_soon("the shutdown cancelled the long request")
        .await;
}
