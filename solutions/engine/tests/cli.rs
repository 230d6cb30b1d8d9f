//! The `tiny-llm` command line on the tiny Llama fixture: JSON output and its stats, context
//! policies, and one-line errors for bad flags. Expected figures come from the fixture's
//! config.json and its tokenizer (read here with the tokenizers library), not from the engine.

use decode::{ContextError, ContextPlan, ContextPolicy};
use rstest::rstest;
use serde_json::Value;
use std::{path::PathBuf, process::Command};

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../models/fixtures")
        .join(name)
}

/// Runs `tiny-llm` on the tiny Llama with `args`: (exit success, stdout, stderr).
fn tiny_llm(model: &str, args: &[&str]) -> (bool, String, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_tiny-llm"))
        .arg("--model-path")
        .arg(fixture(model))
        .args(args)
        .output()
        .expect("tiny-llm runs");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

fn json_run(args: &[&str]) -> Value {
    let (ok, stdout, stderr) = tiny_llm("llama-tiny", &[args, &["--json"]].concat());
    assert!(ok, "tiny-llm {args:?} failed: {stderr}");
    assert_eq!(
        stdout.lines().count(),
        1,
        "--json prints one line: {stdout}"
    );
    serde_json::from_str(&stdout).unwrap_or_else(|error| panic!("not JSON ({error}): {stdout}"))
}

fn tokenizer() -> tokenizers::Tokenizer {
    tokenizers::Tokenizer::from_file(fixture("llama-tiny/tokenizer.json")).expect("tokenizer")
}

fn token_ids(text: &str) -> Vec<u32> {
    tokenizer()
        .encode(text, false)
        .expect("encodes")
        .get_ids()
        .to_vec()
}

fn decode(ids: &[u32]) -> String {
    tokenizer().decode(ids, false).expect("decodes")
}

/// A prompt of many tokens for the tiny tokenizer.
const LONG_PROMPT: &str = "the quick brown fox jumps over the lazy dog and then the dog sleeps";

fn usize_field(stats: &Value, name: &str) -> usize {
    stats[name]
        .as_u64()
        .unwrap_or_else(|| panic!("stats.{name} is not a count: {stats}")) as usize
}

#[test]
fn json_report_carries_text_prompt_and_stats() {
    let prompt = "hello world";
    let report = json_run(&["--prompt", prompt, "--max-new-tokens", "8", "--echo"]);
    let stats = &report["stats"];
    assert_eq!(report["prompt"], decode(&token_ids(prompt)));
    assert!(report["text"].is_string());

    let prompt_tokens = token_ids(prompt).len();
    let generated = usize_field(stats, "generated_tokens");
    assert_eq!(usize_field(stats, "prompt_tokens"), prompt_tokens);
    assert_eq!(usize_field(stats, "prompt_tokens_dropped"), 0);
    // config.json: max_position_embeddings 256.
    assert_eq!(usize_field(stats, "max_seq_len"), 256);
    assert_eq!(
        usize_field(stats, "tokens_left"),
        256 - prompt_tokens - generated
    );
    let stop = stats["stop_reason"].as_str().expect("stop_reason");
    // The last token chosen is never run through the model; an EOS is not counted.
    let positions = match stop {
        "max_tokens" => {
            assert_eq!(generated, 8);
            prompt_tokens + generated - 1
        }
        "eos" => prompt_tokens + generated,
        other => panic!("unexpected stop reason {other}"),
    };
    // 3 layers x (K and V) x 2 kv heads x head_dim 16 x 4 bytes per position; storage grows in
    // steps of 256 positions.
    let per_position = 3 * 2 * 2 * 16 * 4;
    assert_eq!(
        usize_field(stats, "kv_cache_active_bytes"),
        per_position * positions
    );
    assert_eq!(
        usize_field(stats, "kv_cache_allocated_bytes"),
        per_position * 256
    );
    // Tied embedding [512, 64] once, and per layer q, o [64, 64], k, v [32, 64], gate, up
    // [128, 64], down [64, 128]; float32.
    let float32 = (512 * 64 + 3 * (2 * 64 * 64 + 2 * 32 * 64 + 3 * 128 * 64)) * 4;
    assert_eq!(usize_field(stats, "linear_weight_bytes_float32"), float32);
    assert_eq!(usize_field(stats, "linear_weight_bytes"), float32);
    assert_eq!(stats["quantization"], "none");
    assert_eq!(stats["context_policy"], "allow_context_stop");
    assert!(usize_field(stats, "peak_memory_bytes") >= float32);
    for speed in [
        "time_to_first_token_ms",
        "prefill_tokens_per_s",
        "total_time_ms",
    ] {
        assert!(
            stats[speed].as_f64().is_some_and(|value| value > 0.0),
            "{speed}: {stats}"
        );
    }
}

#[test]
fn quantizing_at_load_is_reported() {
    let report = json_run(&[
        "--prompt",
        "hello",
        "--max-new-tokens",
        "2",
        "--quantization",
        "int8",
        "--quant-group-size",
        "32",
    ]);
    let stats = &report["stats"];
    assert_eq!(stats["quantization"], "int8");
    assert_eq!(stats["quant_group_size"], 32);
    assert!(
        usize_field(stats, "linear_weight_bytes")
            < usize_field(stats, "linear_weight_bytes_float32") / 2
    );
}

/// The policies as the book and `--help` state them, for a budget of 12 tokens and 5 to
/// generate.
#[rstest]
#[case::fits_whole(ContextPolicy::AllowContextStop, 6, Ok((0..6, 5, false)))]
#[case::stops_at_context(ContextPolicy::AllowContextStop, 9, Ok((0..9, 3, true)))]
#[case::fills_context(ContextPolicy::AllowContextStop, 12, Err(()))]
#[case::reject_fits(ContextPolicy::Reject, 7, Ok((0..7, 5, false)))]
#[case::reject_one_over(ContextPolicy::Reject, 8, Err(()))]
#[case::truncate_left(ContextPolicy::TruncateLeft, 20, Ok((9..20, 1, true)))]
#[case::truncate_left_short(ContextPolicy::TruncateLeft, 4, Ok((0..4, 5, false)))]
#[case::truncate_right(ContextPolicy::TruncateRight, 20, Ok((0..11, 1, true)))]
#[case::reserve_generation(ContextPolicy::ReserveGeneration, 20, Ok((13..20, 5, false)))]
#[case::reserve_generation_short(ContextPolicy::ReserveGeneration, 3, Ok((0..3, 5, false)))]
fn context_policy_fits_the_budget(
    #[case] policy: ContextPolicy,
    #[case] prompt: usize,
    #[case] expected: Result<(std::ops::Range<usize>, usize, bool), ()>,
) {
    let got = policy.fit(prompt, 5, 12).map_err(|_| ());
    let expected = expected.map(|(kept, max_new_tokens, stops_at_context)| ContextPlan {
        kept,
        max_new_tokens,
        stops_at_context,
    });
    assert_eq!(got, expected, "{policy} with a prompt of {prompt}");
}

#[test]
fn reserve_generation_needs_room_for_a_prompt() {
    assert_eq!(
        ContextPolicy::ReserveGeneration.fit(3, 12, 12),
        Err(ContextError::NoRoomForPrompt {
            max_new_tokens: 12,
            budget: 12
        })
    );
}

#[test]
fn reject_does_not_overflow_on_a_huge_max_new_tokens() {
    assert!(ContextPolicy::Reject.fit(3, usize::MAX, 12).is_err());
    let plan = ContextPolicy::AllowContextStop.fit(3, usize::MAX, 12);
    assert_eq!(plan.map(|plan| plan.max_new_tokens), Ok(9));
}

#[test]
fn policy_names_round_trip() {
    for policy in ContextPolicy::ALL {
        assert_eq!(policy.name().parse::<ContextPolicy>(), Ok(policy));
    }
    let error = "truncate".parse::<ContextPolicy>().unwrap_err();
    assert!(error.contains("truncate_left"), "{error}");
}

#[rstest]
#[case::truncate_left("truncate_left", true)]
#[case::truncate_right("truncate_right", false)]
#[case::reserve_generation("reserve_generation", true)]
fn truncating_policies_keep_the_right_tokens(#[case] policy: &str, #[case] keeps_end: bool) {
    let ids = token_ids(LONG_PROMPT);
    let budget = ids.len() - 4;
    let report = json_run(&[
        "--prompt",
        LONG_PROMPT,
        "--max-new-tokens",
        "3",
        "--max-seq-len",
        &budget.to_string(),
        "--context-policy",
        policy,
        "--echo",
    ]);
    let kept_len = if policy == "reserve_generation" {
        budget - 3
    } else {
        budget - 1
    };
    let kept = if keeps_end {
        &ids[ids.len() - kept_len..]
    } else {
        &ids[..kept_len]
    };
    let stats = &report["stats"];
    assert_eq!(usize_field(stats, "prompt_tokens"), kept_len);
    assert_eq!(
        usize_field(stats, "prompt_tokens_dropped"),
        ids.len() - kept_len
    );
    assert_eq!(report["prompt"], decode(kept));
    let generated = usize_field(stats, "generated_tokens");
    match stats["stop_reason"].as_str() {
        Some("context_length") => assert_eq!(generated, budget - kept_len),
        Some("max_tokens") => assert_eq!(generated, 3),
        Some("eos") => assert!(generated <= budget - kept_len),
        other => panic!("unexpected stop reason {other:?}"),
    }
}

#[test]
fn allow_context_stop_stops_when_the_context_is_full() {
    let ids = token_ids(LONG_PROMPT);
    let budget = ids.len() + 2;
    let report = json_run(&[
        "--prompt",
        LONG_PROMPT,
        "--max-new-tokens",
        "10",
        "--max-seq-len",
        &budget.to_string(),
    ]);
    let stats = &report["stats"];
    let generated = usize_field(stats, "generated_tokens");
    match stats["stop_reason"].as_str() {
        Some("context_length") => {
            assert_eq!(generated, 2);
            assert_eq!(usize_field(stats, "tokens_left"), 0);
        }
        Some("eos") => assert!(generated < 2),
        other => panic!("unexpected stop reason {other:?}"),
    }
}

/// Each bad invocation fails with one line naming the problem, and no panic.
#[rstest]
#[case::prompt_over_budget(&["--prompt", LONG_PROMPT, "--max-seq-len", "4"], "leaves no room to generate")]
#[case::reject(&["--prompt", LONG_PROMPT, "--max-seq-len", "16", "--max-new-tokens", "64", "--context-policy", "reject"], "exceed the context of 16 tokens")]
#[case::max_seq_len_over_model(&["--prompt", "hi", "--max-seq-len", "100000"], "outside this model's context of 1 to 256 tokens")]
#[case::group_size_alone(&["--prompt", "hi", "--quant-group-size", "64"], "--quant-group-size only applies with --quantization")]
#[case::no_prompt(&[], "nothing to continue")]
#[case::empty_prompt(&["--prompt", ""], "the prompt is empty")]
#[case::bad_temperature(&["--prompt", "hi", "--temperature", "-1"], "invalid sampling options")]
fn bad_flags_fail_with_one_clear_line(#[case] args: &[&str], #[case] expected: &str) {
    let (ok, _, stderr) = tiny_llm("llama-tiny", args);
    assert!(!ok, "tiny-llm {args:?} succeeded");
    assert!(stderr.contains(expected), "tiny-llm {args:?}: {stderr}");
    assert!(
        !stderr.contains("panicked"),
        "tiny-llm {args:?} panicked: {stderr}"
    );
    assert_eq!(
        stderr.trim().lines().count(),
        1,
        "tiny-llm {args:?}: {stderr}"
    );
}

#[test]
fn unknown_context_policy_lists_the_policies() {
    let (ok, _, stderr) = tiny_llm("llama-tiny", &["--prompt", "hi", "--context-policy", "cut"]);
    assert!(!ok);
    assert!(stderr.contains("reserve_generation"), "{stderr}");
}

#[test]
fn chat_needs_a_chat_template() {
    // The tiny Llama without its tokenizer_config.json: a model with no chat template.
    let base_model = tempfile::tempdir().expect("temporary directory");
    for file in ["config.json", "model.safetensors", "tokenizer.json"] {
        std::fs::copy(
            fixture("llama-tiny").join(file),
            base_model.path().join(file),
        )
        .expect("copies the fixture");
    }
    let model = base_model.path().to_str().expect("UTF-8 path");
    let (ok, _, stderr) = tiny_llm(model, &["--prompt", "hi", "--chat"]);
    assert!(!ok);
    assert!(stderr.contains("no chat_template"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn missing_model_says_how_to_fetch_it() {
    let (ok, _, stderr) = tiny_llm("no-such-model", &["--prompt", "hi"]);
    assert!(!ok);
    assert!(stderr.contains("cargo xtask models fetch"), "{stderr}");
}
