//! Task 2: EngineLoop::token and Active::send_safe_text

use crate::harness::{
    body_text, greedy_params, limits, prompt_text, reference, roomy, run_to_end, start, within,
    LONG_PROMPT, LONG_TOKENS,
};
use axum::{body::Body, http::StatusCode};
use http_body_util::BodyExt;
use rstest::rstest;
use serde_json::{json, Value};
use serving::{Chunk, FinishReason, GenerateParams, SubmitError, Usage};
use std::time::{Duration, Instant};

/// The next piece of a streamed body, `None` at its end.
async fn next_piece(body: &mut Body) -> Option<String> {
    loop {
        let frame = within("waiting for the next streamed piece", body.frame())
            .await?
            .unwrap_or_else(|error| panic!("reading a streamed body: {error}"));
        if let Ok(data) = frame.into_data() {
            return Some(String::from_utf8(data.to_vec()).expect("a UTF-8 body"));
        }
    }
}

/// The value of the Prometheus sample whose line starts with `name` (and contains `labels`).
fn sample(metrics: &str, name: &str, labels: &[&str]) -> Option<f64> {
    metrics
        .lines()
        .filter(|line| !line.starts_with('#'))
        .filter(|line| line.starts_with(name) && labels.iter().all(|label| line.contains(label)))
        .find_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            let rest = &series[name.len()..];
            (rest.is_empty() || rest.starts_with('{'))
                .then(|| value.parse().ok())
                .flatten()
        })
}

fn gauge(metrics: &str, name: &str) -> f64 {
    sample(metrics, name, &[]).unwrap_or_else(|| panic!("/metrics has no {name}:\n{metrics}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn task_2_greedy_text_matches_hf() {
    let server = start(roomy());
    for sequence in 0..3 {
        let reference = reference(sequence);
        let expected = server.decode(&reference.continuation);
        let new_tokens = reference.continuation.len();
        let generation = server.greedy(reference.prompt.clone(), new_tokens).await;
        let what = format!("seq{sequence} (prompt {:?})", reference.prompt);
        assert_eq!(
            generation.text(),
            expected,
            "{what}: the greedy text differs from HF's continuation {:?} decoded",
            reference.continuation
        );
        assert_eq!(generation.finish_reason, FinishReason::Length, "{what}");
        assert_eq!(
            generation.usage,
            Usage {
                prompt_tokens: reference.prompt.len(),
                completion_tokens: new_tokens,
                total_tokens: reference.prompt.len() + new_tokens,
                // Chapter 10's scheduler has no prefix cache.
                prompt_tokens_details: Default::default(),
            },
            "{what}: usage"
        );
        let timings = generation.timings;
        assert!(
            timings.time_to_first_token_ms > 0.0
                && timings.total_ms >= timings.time_to_first_token_ms
                && timings.decode_tokens_per_s > 0.0,
            "{what}: timings should be positive, total after the first token: {timings:?}"
        );
    }
}

/// Stop strings on seq1's greedy text, " - sing n jusistant\u{fffd} issit...sitex": `expected`
/// is the text before the stop string, `None` the whole text (no stop string completes).
#[rstest]
#[case::in_the_middle(&["jus"], Some(" - sing n "), FinishReason::Stop)]
#[case::the_earliest_of_two(&["sitex", "sing"], Some(" - "), FinishReason::Stop)]
#[case::at_the_very_start(&[" - s"], Some(""), FinishReason::Stop)]
#[case::several_tokens_long(&["sing n jus"], Some(" - "), FinishReason::Stop)]
#[case::its_start_ends_the_text(&["sitex and more"], None, FinishReason::Length)]
#[case::its_start_is_in_the_middle(&["sing a song"], None, FinishReason::Length)]
#[case::absent(&["zebra"], None, FinishReason::Length)]
#[tokio::test(flavor = "multi_thread")]
async fn task_2_text_stops_before_a_stop_string(
    #[case] stop: &[&str],
    #[case] expected: Option<&str>,
    #[case] finish_reason: FinishReason,
) {
    let server = start(roomy());
    let reference = reference(1);
    let whole = server.decode(&reference.continuation);
    let expected = expected.map_or(whole.clone(), String::from);
    let stream = server
        .engine
        .submit(GenerateParams {
            stop: stop.iter().map(|stop| stop.to_string()).collect(),
            constraint: None,
            logprobs: None,
            ..greedy_params(reference.prompt.clone(), reference.continuation.len())
        })
        .unwrap_or_else(|error| panic!("submit: {error:?}"));
    let generation = run_to_end(stream).await;
    assert_eq!(
        generation.text(),
        expected,
        "with stop {stop:?}, greedy text {whole:?}: the chunks {:?} (text that was sent cannot be taken back)",
        generation.pieces
    );
    assert_eq!(
        generation.finish_reason, finish_reason,
        "with stop {stop:?}"
    );
    if finish_reason == FinishReason::Stop {
        assert!(
            generation.usage.completion_tokens < reference.continuation.len(),
            "with stop {stop:?}: generation should end at the token that completes it, after {} tokens",
            generation.usage.completion_tokens
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn task_2_tokens_and_latencies_are_counted() {
    let server = start(roomy());
    let metrics = server.engine.metrics();
    let mut tokens = 0;
    for sequence in [0, 1] {
        let reference = reference(sequence);
        let generation = server.greedy(reference.prompt, 16).await;
        tokens += generation.usage.completion_tokens;
    }
    assert_eq!(
        metrics.generation_tokens.get() as usize,
        tokens,
        "generation_tokens counts every generated token"
    );
    assert_eq!(
        metrics.time_to_first_token.get_sample_count(),
        2,
        "time_to_first_token observes the first token of each request"
    );
    assert_eq!(
        metrics.inter_token_latency.get_sample_count() as usize,
        tokens - 2,
        "inter_token_latency observes each token after a request's first"
    );
    assert!(
        metrics.time_to_first_token.get_sample_sum() > 0.0,
        "time_to_first_token is in seconds since the request arrived"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn task_2_a_dropped_stream_cancels_its_request() {
    let server = start(limits(1, 0, 2048));
    let prompt = server.encode(LONG_PROMPT);
    let mut stream = server
        .engine
        .submit(greedy_params(prompt.clone(), LONG_TOKENS))
        .unwrap_or_else(|error| panic!("submit: {error:?}"));
    let first = within("the first chunk", stream.chunks.recv()).await;
    assert!(
        matches!(first, Some(Chunk::Text(_))),
        "the first chunk of a long request should be text, got {first:?}"
    );
    drop(stream);
    // The only place is free again once the engine notices and cancels the request.
    let deadline = Instant::now() + Duration::from_secs(10);
    let next = loop {
        match server.engine.submit(greedy_params(prompt.clone(), 4)) {
            Ok(stream) => break stream,
            Err(SubmitError::Busy) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            Err(error) => panic!(
                "10 s after its client dropped the stream of a {LONG_TOKENS}-token request, the only place should be free again: {error:?}"
            ),
        }
    };
    let generated = server.engine.metrics().generation_tokens.get() as usize;
    assert!(
        generated < LONG_TOKENS,
        "the dropped request should have been cancelled, not run to its {LONG_TOKENS} tokens ({generated} generated)"
    );
    let generation = run_to_end(next).await;
    assert_eq!(
        generation.usage.completion_tokens, 4,
        "the next request runs"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn task_2_generate_stream_sends_ndjson_lines_then_done() {
    let server = start(roomy());
    let reference = reference(1);
    let prompt = prompt_text(&server, &reference);
    let response = server
        .post(
            "/generate/stream",
            &json!({"prompt": prompt, "max_new_tokens": 16}),
        )
        .await;
    assert_eq!(response.status(), StatusCode::OK, "POST /generate/stream");
    let body = body_text(response).await;
    let lines: Vec<Value> = body
        .lines()
        .map(|line| {
            serde_json::from_str(line)
                .unwrap_or_else(|error| panic!("each line is JSON ({error}): {line:?}"))
        })
        .collect();
    let (done, texts) = lines.split_last().expect("at least the done line");
    let text: String = texts
        .iter()
        .map(|line| {
            line["text"]
                .as_str()
                .unwrap_or_else(|| panic!("a line before the last is {{\"text\": ...}}: {line}"))
        })
        .collect();
    assert_eq!(
        text,
        server.decode(&reference.continuation),
        "the streamed text (greedy by default) should be HF's continuation"
    );
    assert_eq!(done["done"], true, "the last line: {done}");
    assert_eq!(done["finish_reason"], "length", "the last line: {done}");
    assert_eq!(
        done["stats"]["generated_tokens"], 16,
        "the last line: {done}"
    );
    assert_eq!(
        done["stats"]["prompt_tokens"],
        reference.prompt.len(),
        "the last line: {done}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn task_2_metrics_endpoint_counts_requests_and_tokens() {
    let server = start(roomy());
    let before = server.metrics().await;
    for name in [
        "tiny_llm_requests_running",
        "tiny_llm_requests_waiting",
        "tiny_llm_kv_cache_bytes",
        "tiny_llm_generation_tokens_total",
        "tiny_llm_prompt_tokens_total",
    ] {
        gauge(&before, name);
    }
    let prompt = server.encode("The sea is wide,");
    for max_new_tokens in [3, 5] {
        let response = server
            .post(
                "/generate/stream",
                &json!({"prompt": "The sea is wide,", "max_new_tokens": max_new_tokens}),
            )
            .await;
        assert_eq!(response.status(), StatusCode::OK, "POST /generate/stream");
        body_text(response).await;
    }
    let after = server.metrics().await;
    let requests = sample(
        &after,
        "tiny_llm_requests_total",
        &["endpoint=\"/generate/stream\"", "status=\"200\""],
    );
    assert_eq!(
        requests,
        Some(2.0),
        "tiny_llm_requests_total{{endpoint=\"/generate/stream\",status=\"200\"}} after two requests:\n{after}"
    );
    assert_eq!(
        gauge(&after, "tiny_llm_generation_tokens_total"),
        8.0,
        "tokens generated by two requests of 3 and 5 tokens:\n{after}"
    );
    assert_eq!(
        gauge(&after, "tiny_llm_prompt_tokens_total"),
        2.0 * prompt.len() as f64,
        "prompt tokens of the two requests:\n{after}"
    );
    assert_eq!(
        sample(&after, "tiny_llm_time_to_first_token_seconds_count", &[]),
        Some(2.0),
        "one first token per request:\n{after}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn task_2_a_client_that_disconnects_frees_its_slot() {
    let server = start(limits(1, 0, 2048));
    let response = server
        .post(
            "/generate/stream",
            &json!({"prompt": LONG_PROMPT, "max_new_tokens": LONG_TOKENS}),
        )
        .await;
    assert_eq!(response.status(), StatusCode::OK, "POST /generate/stream");
    let mut body = response.into_body();
    let first = next_piece(&mut body).await;
    assert!(first.is_some(), "the stream ended before its first line");
    drop(body);
    // The engine notices at its next token, cancels the request and frees its cache.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let metrics = server.metrics().await;
        let (running, cache) = (
            gauge(&metrics, "tiny_llm_requests_running"),
            gauge(&metrics, "tiny_llm_kv_cache_bytes"),
        );
        if running == 0.0 && cache == 0.0 {
            let generated = gauge(&metrics, "tiny_llm_generation_tokens_total");
            assert!(
                generated < LONG_TOKENS as f64,
                "the request should have been cancelled when its client left, not run to its {LONG_TOKENS} tokens ({generated} generated)"
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "10 s after the client disconnected, /metrics still shows {running} running and {cache} bytes of KV cache"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let response = server
        .post(
            "/generate/stream",
            &json!({"prompt": "The sea is wide,", "max_new_tokens": 3}),
        )
        .await;
    assert_eq!(
        response.status(),
        StatusCode::OK,
        "the only slot is free again: a new request runs"
    );
    body_text(response).await;
}
