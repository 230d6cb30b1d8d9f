//! Chapter 6 tests. Run them with `cargo xtask test decode` (add `--task N` for one task).
//! Token ids and continuations are compared with Hugging Face's (models/fixtures/), never with our
//! own output.

use decode::{
    generate, greedy, DecodeError, Generation, GenerationOptions, Message, Model, StopReason,
    StreamingDetokenizer, Tokenizer,
};
use mlx_rs::Array;
use rstest::rstest;
use std::path::{Path, PathBuf};
use test_support::{fetched_model_dir, fixture_path, load_fixture};

const SMOLLM2: &str = "smollm2-135m-instruct";

fn tokenizer_at(dir: &Path) -> Tokenizer {
    Tokenizer::load(dir)
        .unwrap_or_else(|error| panic!("Tokenizer::load({}): {error}", dir.display()))
}

fn model_at(dir: &Path) -> Model {
    Model::load(dir).unwrap_or_else(|error| panic!("Model::load({}): {error}", dir.display()))
}

fn ids(array: &Array) -> Vec<u32> {
    array
        .as_slice::<i32>()
        .iter()
        .map(|&id| id as u32)
        .collect()
}

fn ok<T>(result: Result<T, DecodeError>, what: &str) -> T {
    result.unwrap_or_else(|error| panic!("{what} returned an error: {error}"))
}

/// `models/fixtures/<name>` for a tiny model, or the fetched SmolLM2 (`None` after printing why
/// the test checks nothing when it is absent).
fn model_dir(name: &str) -> Option<PathBuf> {
    if name == SMOLLM2 {
        fetched_model_dir(SMOLLM2)
    } else {
        Some(fixture_path(name))
    }
}

/// The texts of models/fixtures/smollm2/prompts.json, in order.
fn smollm2_prompt_texts() -> Vec<String> {
    let path = fixture_path("smollm2/prompts.json");
    let prompts: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).expect("prompts.json is committed"))
            .expect("prompts.json is JSON");
    prompts
        .as_array()
        .expect("prompts.json is a list")
        .iter()
        .map(|prompt| {
            prompt["text"]
                .as_str()
                .expect("each prompt has a text")
                .to_string()
        })
        .collect()
}

#[rstest]
#[case::plain("seq1", "The sea is wide,")]
#[case::with_special_tokens(
    "seq2",
    "<|im_start|>user\nHi, there!<|im_end|>\n<|im_start|>assistant\n"
)]
fn task_1_tiny_tokenizer_matches_transformers(#[case] sequence: &str, #[case] text: &str) {
    let tokenizer = tokenizer_at(&fixture_path("llama-tiny"));
    let reference = load_fixture("llama-tiny/reference.safetensors");
    let expected = ids(&reference[&format!("{sequence}.tokens")]);
    let encoded = ok(tokenizer.encode(text), "Tokenizer::encode");
    assert_eq!(encoded, expected, "encode({text:?})");
    assert_eq!(ok(tokenizer.decode(&encoded), "Tokenizer::decode"), text);
}

#[rstest]
#[case::tiny("llama-tiny")]
#[case::smollm2(SMOLLM2)]
fn task_1_round_trip(#[case] model: &str) {
    let Some(dir) = model_dir(model) else {
        return;
    };
    let tokenizer = tokenizer_at(&dir);
    for text in [
        "Hello, world!",
        "  two spaces, a\ttab and\nnew lines\n\n",
        "héllo 世界 🙂",
        "12345 + 678 = 7023",
        "<|im_start|>user\nhi<|im_end|>",
    ] {
        let encoded = ok(tokenizer.encode(text), "Tokenizer::encode");
        let decoded = ok(tokenizer.decode(&encoded), "Tokenizer::decode");
        assert_eq!(decoded, text, "{model}: decode(encode(text)) differs");
    }
}

#[test]
fn task_1_smollm2_tokenizer_matches_transformers() {
    let Some(dir) = fetched_model_dir(SMOLLM2) else {
        return;
    };
    let tokenizer = tokenizer_at(&dir);
    let reference = load_fixture("smollm2/reference.safetensors");
    for (index, text) in smollm2_prompt_texts().iter().enumerate() {
        let expected = ids(&reference[&format!("prompt{index}.tokens")]);
        assert_eq!(
            ok(tokenizer.encode(text), "Tokenizer::encode"),
            expected,
            "prompt {index}: encode({text:?})"
        );
    }
}

#[test]
fn task_1_errors_name_the_file() {
    let folder = tempfile::tempdir().unwrap();
    let missing = Tokenizer::load(folder.path())
        .err()
        .expect("a folder without tokenizer.json must be rejected")
        .to_string();
    assert!(
        missing.contains("tokenizer.json"),
        "the error should name the file: {missing}"
    );
    std::fs::write(folder.path().join("tokenizer.json"), "{\"model\": 3}").unwrap();
    let corrupt = Tokenizer::load(folder.path())
        .err()
        .expect("a corrupt tokenizer.json must be rejected")
        .to_string();
    assert!(
        corrupt.contains("tokenizer.json"),
        "the error should name the file: {corrupt}"
    );
}

#[test]
fn task_2_chat_template_renders_chatml() {
    let tokenizer = tokenizer_at(&fixture_path("qwen2-tiny"));
    let messages = [
        Message::new("system", "You are terse."),
        Message::new("user", "Hi, there!"),
    ];
    let expected = "<|im_start|>system\nYou are terse.<|im_end|>\n\
                    <|im_start|>user\nHi, there!<|im_end|>\n";
    assert_eq!(
        ok(
            tokenizer.apply_chat_template(&messages, false),
            "apply_chat_template"
        ),
        expected
    );
    assert_eq!(
        ok(
            tokenizer.apply_chat_template(&messages, true),
            "apply_chat_template"
        ),
        format!("{expected}<|im_start|>assistant\n"),
        "add_generation_prompt should end with the assistant's header"
    );
}

#[test]
fn task_2_smollm2_chat_template_matches_transformers() {
    let Some(dir) = fetched_model_dir(SMOLLM2) else {
        return;
    };
    let tokenizer = tokenizer_at(&dir);
    // prompts.json's chat prompt: SmolLM2's template adds its default system prompt.
    let messages = [Message::new(
        "user",
        "What is the tallest mountain in the world?",
    )];
    assert_eq!(
        ok(
            tokenizer.apply_chat_template(&messages, true),
            "apply_chat_template"
        ),
        smollm2_prompt_texts()[3]
    );
}

#[test]
fn task_2_no_template_is_a_clear_error() {
    let folder = tempfile::tempdir().unwrap();
    std::fs::copy(
        fixture_path("llama-tiny/tokenizer.json"),
        folder.path().join("tokenizer.json"),
    )
    .unwrap();
    std::fs::write(
        folder.path().join("tokenizer_config.json"),
        r#"{"eos_token": "<|im_end|>"}"#,
    )
    .unwrap();
    let tokenizer = tokenizer_at(folder.path());
    let error = tokenizer
        .apply_chat_template(&[Message::new("user", "hi")], true)
        .expect_err("a model without a chat_template cannot format a chat");
    assert!(
        matches!(error, DecodeError::NoChatTemplate { .. }),
        "expected DecodeError::NoChatTemplate, got {error:?}"
    );
}

#[rstest]
#[case::tiny("llama-tiny", "héllo 世界 🙂")]
#[case::smollm2(SMOLLM2, "héllo 世界 🙂 北京是中国的首都，")]
fn task_3_streaming_never_splits_a_character(#[case] model: &str, #[case] text: &str) {
    let Some(dir) = model_dir(model) else {
        return;
    };
    let tokenizer = tokenizer_at(&dir);
    let tokens = ok(tokenizer.encode(text), "Tokenizer::encode");
    let mut detokenizer = StreamingDetokenizer::new();
    let mut chunks = Vec::new();
    for &token in &tokens {
        chunks.push(ok(
            detokenizer.push(&tokenizer, token),
            "StreamingDetokenizer::push",
        ));
    }
    chunks.push(ok(
        detokenizer.finish(&tokenizer),
        "StreamingDetokenizer::finish",
    ));
    for (index, chunk) in chunks.iter().enumerate() {
        assert!(
            !chunk.contains('\u{FFFD}'),
            "{model}: chunk {index} {chunk:?} contains U+FFFD (a split character); chunks: {chunks:?}"
        );
    }
    assert_eq!(chunks.concat(), text, "{model}: the chunks: {chunks:?}");
    // The test means something only if some character was split across tokens.
    assert!(
        tokens.len() > text.chars().count(),
        "{model}: every character is one token"
    );
}

/// Runs `generate` with `greedy` and checks that the streamed chunks add up to the returned text.
fn generate_greedy(
    model: &mut Model,
    tokenizer: &Tokenizer,
    prompt: &[u32],
    options: &GenerationOptions,
) -> Generation {
    let mut streamed = String::new();
    let generation = ok(
        generate(
            model,
            tokenizer,
            prompt,
            options,
            &mut greedy,
            &mut |chunk| streamed.push_str(chunk),
        ),
        "generate",
    );
    assert_eq!(
        streamed, generation.text,
        "the text streamed through on_text differs from Generation::text"
    );
    generation
}

fn options(max_new_tokens: usize, ignore_eos: bool) -> GenerationOptions {
    GenerationOptions {
        max_new_tokens,
        stop_strings: Vec::new(),
        ignore_eos,
    }
}

#[rstest]
#[case::llama("llama-tiny")]
#[case::qwen2("qwen2-tiny")]
#[case::qwen3("qwen3-tiny")]
fn task_4_greedy_matches_transformers(#[case] model_name: &str, #[values(1, 2)] sequence: u32) {
    let dir = fixture_path(model_name);
    let (mut model, tokenizer) = (model_at(&dir), tokenizer_at(&dir));
    let reference = load_fixture(&format!("{model_name}/reference.safetensors"));
    let prompt = ids(&reference[&format!("seq{sequence}.tokens")]);
    let expected = ids(&reference[&format!("seq{sequence}.greedy_continuation")]);
    let generation = generate_greedy(&mut model, &tokenizer, &prompt, &options(16, true));
    assert_eq!(
        generation.tokens, expected,
        "{model_name}, seq{sequence}: greedy continuation"
    );
    assert_eq!(generation.stop_reason, StopReason::MaxTokens);
    assert_eq!(
        generation.text,
        ok(tokenizer.decode(&expected), "Tokenizer::decode")
    );
}

#[test]
fn task_4_next_token_chooses_and_sees_the_sequence() {
    let dir = fixture_path("llama-tiny");
    let (mut model, tokenizer) = (model_at(&dir), tokenizer_at(&dir));
    let reference = load_fixture("llama-tiny/reference.safetensors");
    let prompt = ids(&reference["seq1.tokens"]);
    // Any chooser works: this one repeats one token (not EOS), and checks what it is given.
    let chosen = ids(&reference["seq1.greedy_continuation"])[0];
    let mut expected_sequence = prompt.clone();
    let vocab_size = model.config().vocab_size;
    let mut choose = |logits: &Array, tokens: &[u32]| -> Result<u32, DecodeError> {
        assert_eq!(
            logits.shape(),
            [vocab_size],
            "next_token gets the last position's logits [V]"
        );
        assert_eq!(
            tokens, expected_sequence,
            "next_token gets the tokens so far, prompt included"
        );
        expected_sequence.push(chosen);
        Ok(chosen)
    };
    let generation = ok(
        generate(
            &mut model,
            &tokenizer,
            &prompt,
            &options(3, true),
            &mut choose,
            &mut |_| {},
        ),
        "generate",
    );
    assert_eq!(
        generation.tokens, [chosen; 3],
        "the tokens next_token chose"
    );
}

#[test]
fn task_4_smollm2_greedy_matches_transformers() {
    let Some(dir) = fetched_model_dir(SMOLLM2) else {
        return;
    };
    let (mut model, tokenizer) = (model_at(&dir), tokenizer_at(&dir));
    let reference = load_fixture("smollm2/reference.safetensors");
    // Prompts 0 and 5: where the reference suppressed EOS (steps 29 and 22), so these also check
    // that `ignore_eos` masks it.
    for prompt in [0, 5] {
        let tokens = ids(&reference[&format!("prompt{prompt}.tokens")]);
        let expected = ids(&reference[&format!("prompt{prompt}.greedy_continuation")]);
        let generation = generate_greedy(&mut model, &tokenizer, &tokens, &options(32, true));
        assert_eq!(
            generation.tokens, expected,
            "SmolLM2 prompt {prompt}: greedy continuation"
        );
    }
}

#[test]
fn task_4_smollm2_stops_at_eos() {
    let Some(dir) = fetched_model_dir(SMOLLM2) else {
        return;
    };
    let (mut model, tokenizer) = (model_at(&dir), tokenizer_at(&dir));
    let reference = load_fixture("smollm2/reference.safetensors");
    // Prompt 5: without suppression, transformers' argmax was EOS (id 2) at step 22.
    let tokens = ids(&reference["prompt5.tokens"]);
    let expected = ids(&reference["prompt5.greedy_continuation"]);
    let generation = generate_greedy(&mut model, &tokenizer, &tokens, &options(100, false));
    assert_eq!(generation.stop_reason, StopReason::Eos);
    assert_eq!(
        generation.tokens,
        expected[..22],
        "the tokens before EOS (which is not included)"
    );
}

#[rstest]
#[case::llama("llama-tiny")]
#[case::qwen2("qwen2-tiny")]
#[case::qwen3("qwen3-tiny")]
fn task_4_tiny_models_stop_at_max_tokens(#[case] model_name: &str) {
    // The tiny models never chose EOS along their greedy paths (models/fixtures/README.md), so
    // without `ignore_eos` they run to `max_new_tokens` with the same tokens.
    let dir = fixture_path(model_name);
    let (mut model, tokenizer) = (model_at(&dir), tokenizer_at(&dir));
    let reference = load_fixture(&format!("{model_name}/reference.safetensors"));
    let prompt = ids(&reference["seq2.tokens"]);
    let expected = ids(&reference["seq2.greedy_continuation"]);
    let generation = generate_greedy(&mut model, &tokenizer, &prompt, &options(10, false));
    assert_eq!(generation.stop_reason, StopReason::MaxTokens);
    assert_eq!(generation.tokens, expected[..10]);
}

#[rstest]
#[case::llama("llama-tiny")]
#[case::qwen2("qwen2-tiny")]
#[case::qwen3("qwen3-tiny")]
fn task_4_stop_string_spanning_tokens(#[case] model_name: &str) {
    let dir = fixture_path(model_name);
    let (mut model, tokenizer) = (model_at(&dir), tokenizer_at(&dir));
    let reference = load_fixture(&format!("{model_name}/reference.safetensors"));
    let prompt = ids(&reference["seq1.tokens"]);
    let continuation = ids(&reference["seq1.greedy_continuation"]);
    // Build a stop string from the reference continuation: the last character of token k's text
    // and the first of token k + 1's, the earliest such pair that first occurs right there.
    let text_of = |tokens: &[u32]| ok(tokenizer.decode(tokens), "Tokenizer::decode");
    let (stop, stop_at, tokens_needed) = (1..continuation.len() - 1)
        .find_map(|k| {
            let before = text_of(&continuation[..=k]);
            let next = text_of(&continuation[k + 1..k + 2]);
            let last = before.chars().last()?;
            let first = next.chars().next()?;
            let stop = format!("{last}{first}");
            let stop_at = before.len() - last.len_utf8();
            let full = text_of(&continuation[..k + 2]);
            (!stop.contains('\u{FFFD}') && full.find(&stop) == Some(stop_at)).then_some((
                stop,
                stop_at,
                k + 2,
            ))
        })
        .expect("some pair of neighbouring tokens makes a stop string");
    let full_text = text_of(&continuation);
    let options = GenerationOptions {
        max_new_tokens: 16,
        stop_strings: vec!["never generated \u{1F642}".into(), stop.clone()],
        ignore_eos: true,
    };
    let generation = generate_greedy(&mut model, &tokenizer, &prompt, &options);
    assert_eq!(
        generation.stop_reason,
        StopReason::StopString,
        "{model_name}: stop string {stop:?} in {full_text:?}"
    );
    assert_eq!(
        generation.text,
        full_text[..stop_at],
        "{model_name}: the text stops right before {stop:?}"
    );
    assert_eq!(
        generation.tokens,
        continuation[..tokens_needed],
        "{model_name}: generation ends with the token that completes {stop:?}"
    );
}
