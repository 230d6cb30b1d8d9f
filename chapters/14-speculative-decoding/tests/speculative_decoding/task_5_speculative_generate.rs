//! Task 5: speculative generation, token for token what greedy decoding gives.

use crate::harness::{
    load_model, options, other_tiny, plain_greedy, reference_sequence, speculate, tiny_model,
    tokenizer_at, Drafting, TINY_VOCAB,
};
use rstest::rstest;
use speculative_decoding::{
    load_model as load_quantized, Drafter, Kernel, Model, ModelDrafter, NgramDrafter, Quantization,
    SamplingParams, StopReason, STEP,
};
use std::{fs, path::Path};
use test_support::{
    expect_ok as ok, fetched_model_dir, fixture_path, load_fixture, token_ids as ids,
};

/// Runs `f` with the drafter `drafting` describes for a target called `target_name`.
fn with_drafter<T>(
    target: &Model,
    target_name: &str,
    drafting: Drafting,
    params: SamplingParams,
    f: impl FnOnce(&mut dyn Drafter) -> T,
) -> T {
    match drafting {
        Drafting::Itself => f(&mut ok(
            ModelDrafter::new(target, TINY_VOCAB, params),
            "ModelDrafter::new",
        )),
        Drafting::OtherModel => {
            let other = tiny_model(other_tiny(target_name));
            f(&mut ok(
                ModelDrafter::new(&other, TINY_VOCAB, params),
                "ModelDrafter::new",
            ))
        }
        Drafting::Ngram => f(&mut NgramDrafter::default()),
    }
}

/// Every drafter and draft length gives transformers' greedy continuation of the fixtures'
/// three prompts.
#[rstest]
fn task_5_greedy_speculation_matches_transformers(
    #[values("llama-tiny", "qwen2-tiny", "qwen3-tiny")] model_name: &str,
    #[values(Drafting::Itself, Drafting::OtherModel, Drafting::Ngram)] drafting: Drafting,
    #[values(1, 4)] k: usize,
) {
    let target = tiny_model(model_name);
    let tokenizer = tokenizer_at(&fixture_path(model_name));
    for index in 0..3 {
        let (prompt, continuation) = reference_sequence(model_name, index);
        let (result, streamed) = with_drafter(
            &target,
            model_name,
            drafting,
            SamplingParams::default(),
            |drafter| {
                speculate(
                    &target,
                    drafter,
                    &tokenizer,
                    &prompt,
                    &options(continuation.len()),
                    SamplingParams::default(),
                    k,
                )
            },
        );
        let what = format!("{model_name}, seq{index}, {drafting:?} drafting, k = {k}");
        assert_eq!(result.generation.tokens, continuation, "{what}");
        assert_eq!(
            result.generation.stop_reason,
            StopReason::MaxTokens,
            "{what}"
        );
        assert_eq!(streamed, result.generation.text, "{what}: streamed text");
        let stats = &result.stats;
        assert_eq!(
            stats.target_steps + stats.accepted + 1,
            continuation.len(),
            "{what}: each target step after the prefill yields its accepted tokens and one more ({stats:?})"
        );
        if let Drafting::Itself = drafting {
            assert_eq!(
                stats.accepted, stats.drafted,
                "{what}: a greedy model drafting for itself is always right"
            );
        }
    }
}

/// A prompt that ends a few positions before the cache grows (chapter 8's STEP): drafts are
/// written past the boundary and rewound across it, step after step. Plain greedy decoding
/// with chapter 8's cache is the reference.
#[rstest]
fn task_5_rewinds_across_the_cache_step(
    #[values("llama-tiny", "qwen3-tiny")] model_name: &str,
    #[values(Drafting::OtherModel, Drafting::Ngram)] drafting: Drafting,
) {
    let target = tiny_model(model_name);
    let tokenizer = tokenizer_at(&fixture_path(model_name));
    let (start, _) = reference_sequence(model_name, 2);
    // Repetitive, so that prompt lookup finds matches; 250 tokens, STEP is 256.
    let prompt: Vec<u32> = start
        .iter()
        .cycle()
        .take(STEP as usize - 6)
        .copied()
        .collect();
    let mut options = options(20);
    options.ignore_eos = true;
    let expected = plain_greedy(&target, &tokenizer, &prompt, &options);
    let (result, _) = with_drafter(
        &target,
        model_name,
        drafting,
        SamplingParams::default(),
        |drafter| {
            speculate(
                &target,
                drafter,
                &tokenizer,
                &prompt,
                &options,
                SamplingParams::default(),
                5,
            )
        },
    );
    assert_eq!(
        result.generation.tokens,
        expected.tokens,
        "{model_name}, {drafting:?} drafting, from position {} across {STEP}",
        prompt.len()
    );
}

/// `model_name`'s folder copied into `into` with `eos_token_id` set to `eos`.
fn with_eos(model_name: &str, eos: u32, into: &Path) {
    for entry in ok(fs::read_dir(fixture_path(model_name)), "read_dir") {
        let path = ok(entry, "read_dir entry").path();
        let name = path.file_name().expect("a file name");
        ok(fs::copy(&path, into.join(name)), "copy a fixture file");
    }
    let config = into.join("config.json");
    let text = ok(fs::read_to_string(&config), "read config.json");
    let mut json: serde_json::Value = ok(serde_json::from_str(&text), "parse config.json");
    json["eos_token_id"] = eos.into();
    ok(fs::write(&config, json.to_string()), "write config.json");
}

/// A model whose EOS is the 6th token of its greedy continuation, drafting for itself 8 tokens
/// at a time: the EOS comes inside an accepted run, and generation stops right there.
#[rstest]
fn task_5_eos_inside_an_accepted_run_stops_there(
    #[values("llama-tiny", "qwen2-tiny", "qwen3-tiny")] model_name: &str,
) {
    let (prompt, continuation) = reference_sequence(model_name, 1);
    let position = (0..continuation.len())
        .find(|&i| i >= 5 && !continuation[..i].contains(&continuation[i]))
        .expect("a token not seen earlier in the continuation");
    let dir = ok(tempfile::tempdir(), "tempdir");
    with_eos(model_name, continuation[position], dir.path());
    let target = load_model(dir.path());
    let tokenizer = tokenizer_at(dir.path());
    let expected = plain_greedy(&target, &tokenizer, &prompt, &options(16));
    assert_eq!(
        expected.tokens,
        continuation[..position],
        "the reference stops at the EOS"
    );
    let mut drafter = ok(
        ModelDrafter::new(&target, TINY_VOCAB, SamplingParams::default()),
        "ModelDrafter::new",
    );
    let (result, _) = speculate(
        &target,
        &mut drafter,
        &tokenizer,
        &prompt,
        &options(16),
        SamplingParams::default(),
        8,
    );
    assert_eq!(
        result.generation, expected,
        "{model_name}: EOS at token {position}"
    );
    assert_eq!(result.generation.stop_reason, StopReason::Eos);
}

/// A stop string that a draft of 8 tokens runs past: the text stops before it, the tokens at
/// the one that completed it, as chapter 6's `generate` does.
#[rstest]
fn task_5_stop_string_inside_an_accepted_run_stops_there(
    #[values("llama-tiny", "qwen2-tiny", "qwen3-tiny")] model_name: &str,
) {
    let target = tiny_model(model_name);
    let tokenizer = tokenizer_at(&fixture_path(model_name));
    let (prompt, continuation) = reference_sequence(model_name, 0);
    let text = ok(tokenizer.decode(&continuation), "decode");
    // A few characters from the middle of the continuation's text.
    let middle: String = text
        .chars()
        .skip(text.chars().count() / 2)
        .take(3)
        .collect();
    let mut options = options(16);
    options.stop_strings = vec![middle.clone()];
    let expected = plain_greedy(&target, &tokenizer, &prompt, &options);
    assert_eq!(
        expected.stop_reason,
        StopReason::StopString,
        "the reference meets {middle:?}"
    );
    let mut drafter = ok(
        ModelDrafter::new(&target, TINY_VOCAB, SamplingParams::default()),
        "ModelDrafter::new",
    );
    let (result, streamed) = speculate(
        &target,
        &mut drafter,
        &tokenizer,
        &prompt,
        &options,
        SamplingParams::default(),
        8,
    );
    assert_eq!(
        result.generation, expected,
        "{model_name}: stop string {middle:?}"
    );
    assert_eq!(
        streamed, expected.text,
        "{model_name}: the stop string is not streamed"
    );
}

/// However long the draft, exactly `max_new_tokens` come out.
#[rstest]
#[case::fewer_than_a_draft(3, 8)]
#[case::one(1, 4)]
#[case::none(0, 4)]
#[case::a_few_drafts(11, 4)]
fn task_5_the_token_limit_holds(#[case] max_new_tokens: usize, #[case] k: usize) {
    let target = tiny_model("qwen3-tiny");
    let tokenizer = tokenizer_at(&fixture_path("qwen3-tiny"));
    let (prompt, continuation) = reference_sequence("qwen3-tiny", 2);
    let mut drafter = ok(
        ModelDrafter::new(&target, TINY_VOCAB, SamplingParams::default()),
        "ModelDrafter::new",
    );
    let (result, _) = speculate(
        &target,
        &mut drafter,
        &tokenizer,
        &prompt,
        &options(max_new_tokens),
        SamplingParams::default(),
        k,
    );
    assert_eq!(result.generation.tokens, continuation[..max_new_tokens]);
    assert_eq!(result.generation.stop_reason, StopReason::MaxTokens);
}

/// With temperature, a model drafting for itself proposes from the target's own distribution:
/// the rejection rule keeps nearly everything (only float rounding between one-token and
/// (k+1)-token passes can tip a coin). The same seed gives the same text.
#[test]
fn task_5_sampling_with_the_target_as_drafter_keeps_nearly_every_draft() {
    let target = tiny_model("llama-tiny");
    let tokenizer = tokenizer_at(&fixture_path("llama-tiny"));
    let (prompt, _) = reference_sequence("llama-tiny", 1);
    let params = SamplingParams {
        temperature: 0.9,
        top_p: Some(0.95),
        seed: 5,
        ..SamplingParams::default()
    };
    let mut options = options(40);
    options.ignore_eos = true;
    let run = || {
        let mut drafter = ok(
            ModelDrafter::new(&target, TINY_VOCAB, params),
            "ModelDrafter::new",
        );
        speculate(
            &target,
            &mut drafter,
            &tokenizer,
            &prompt,
            &options,
            params,
            4,
        )
        .0
    };
    let (first, second) = (run(), run());
    assert_eq!(first.generation.tokens.len(), 40);
    assert_eq!(
        first.generation.tokens, second.generation.tokens,
        "same seed, same tokens"
    );
    let rate = first.stats.acceptance_rate().expect("drafts were proposed");
    assert!(
        rate > 0.95,
        "acceptance rate {rate:.3} for a drafter equal to the target"
    );
}

/// SmolLM2 (float) with its 4-bit conversion drafting, and with prompt lookup: transformers'
/// greedy continuations of the story and code prompts (EOS masked as the reference did).
#[rstest]
#[case::story(1)]
#[case::code(2)]
fn task_5_smollm2_with_its_4bit_drafter_matches_transformers(#[case] prompt: usize) {
    let (Some(dir), Some(quantized_dir)) = (
        fetched_model_dir("smollm2-135m-instruct"),
        fetched_model_dir("smollm2-135m-instruct-4bit"),
    ) else {
        return;
    };
    let target = load_model(&dir);
    let tokenizer = tokenizer_at(&dir);
    let drafter_model = ok(
        load_quantized(&quantized_dir, Quantization::None, 32, Kernel::Mlx),
        "load the 4-bit model",
    );
    let reference = load_fixture("smollm2/reference.safetensors");
    let tokens = ids(&reference[&format!("prompt{prompt}.tokens")]);
    let expected = ids(&reference[&format!("prompt{prompt}.greedy_continuation")]);
    let mut options = options(expected.len());
    options.ignore_eos = true;
    let vocab = target.config().vocab_size;
    let mut model_drafter = ok(
        ModelDrafter::new(&drafter_model, vocab, SamplingParams::default()),
        "ModelDrafter::new",
    );
    let drafters: [(&str, &mut dyn Drafter); 2] = [
        ("4-bit SmolLM2", &mut model_drafter),
        ("prompt lookup", &mut NgramDrafter::default()),
    ];
    for (name, drafter) in drafters {
        let (result, _) = speculate(
            &target,
            drafter,
            &tokenizer,
            &tokens,
            &options,
            SamplingParams::default(),
            3,
        );
        assert_eq!(
            result.generation.tokens, expected,
            "SmolLM2 prompt {prompt}, drafted by {name}"
        );
    }
}
