//! The engine's greedy path, `ReadAhead`, against HF transformers' references for the tiny
//! models (models/fixtures/): the same greedy continuations, and the right logits when the
//! caller chooses other tokens than the one it queued.

use decode::{generate, greedy, GenerationOptions, LanguageModel, Tokenizer};
use engine::read_ahead::ReadAhead;
use mlx_rs::{ops::indexing::IndexOp, Array};
use quantized_matmul::{load_model, Kernel, Model, Quantization};
use rstest::rstest;
use test_support::{
    assert_allclose, expect_ok as ok, fixture_path, load_fixture, token_ids as ids, Tolerance,
};

/// The engine's own loading: MLX's fused kernels.
fn engine_model(name: &str) -> Model {
    ok(
        load_model(&fixture_path(name), Quantization::None, 32, Kernel::Mlx),
        "load_model",
    )
}

/// The reference is float32 PyTorch, within 1e-5 of the tensor's largest value (or of 1) of a
/// float64 NumPy model (models/fixtures/generate.py).
fn hf_tolerance(expected: &Array) -> Tolerance {
    let largest = ok(expected.abs().and_then(|a| a.max(None)), "max").item_exact::<f32>();
    Tolerance {
        rtol: 1e-5,
        atol: 1e-5 * f64::from(largest.max(1.0)),
    }
}

#[rstest]
fn greedy_continuations_match_transformers(
    #[values("llama-tiny", "qwen2-tiny", "qwen3-tiny")] model_name: &str,
    #[values(0, 1, 2)] sequence: usize,
) {
    let model = engine_model(model_name);
    let tokenizer = ok(
        Tokenizer::load(&fixture_path(model_name)),
        "Tokenizer::load",
    );
    let reference = load_fixture(&format!("{model_name}/reference.safetensors"));
    let prompt = ids(&reference[&format!("seq{sequence}.tokens")]);
    let expected = ids(&reference[&format!("seq{sequence}.greedy_continuation")]);
    let options = GenerationOptions {
        max_new_tokens: expected.len(),
        stop_strings: Vec::new(),
        ignore_eos: true,
    };
    let mut ahead = ReadAhead::new(&model, options.ignore_eos);
    let generation = ok(
        generate(
            &mut ahead,
            &tokenizer,
            &prompt,
            &options,
            &mut greedy,
            &mut |_| {},
        ),
        "generate",
    );
    assert_eq!(
        generation.tokens, expected,
        "{model_name}, seq{sequence}: greedy continuation reading ahead"
    );
    // The prompt and every token but the last: the step queued after it is dropped.
    let held = (prompt.len() + expected.len() - 1) as i32;
    for (layer, cache) in ok(ahead.cache(), "cache").iter().enumerate() {
        assert_eq!(
            cache.offset(),
            held,
            "{model_name}: layer {layer}'s cache after generating"
        );
    }
}

/// Teacher forcing: the caller picks each next token of the reference sequence whatever the
/// logits say, so the queued argmax is mostly wrong and must be dropped; every step's logits must
/// still be transformers' for that position.
#[rstest]
fn logits_follow_the_tokens_the_caller_chose(
    #[values("llama-tiny", "qwen2-tiny", "qwen3-tiny")] model_name: &str,
) {
    let model = engine_model(model_name);
    let reference = load_fixture(&format!("{model_name}/reference.safetensors"));
    let tokens = ids(&reference["seq2.tokens"]);
    let logits = &reference["seq2.logits"]; // [L, V]
    let mut ahead = ReadAhead::new(&model, false);
    let mut guessed_right = 0;
    for position in 0..tokens.len() {
        let got = ok(
            ahead.next_token_logits(&tokens[..=position]),
            "next_token_logits",
        );
        let expected = logits.index(position as i32); // [V]
        assert_allclose(
            &got,
            &expected,
            hf_tolerance(&expected),
            &format!("{model_name}: logits after {} tokens of seq2", position + 1),
        );
        let argmax = ok(greedy(&got, &[]), "greedy");
        guessed_right += usize::from(tokens.get(position + 1) == Some(&argmax));
    }
    assert!(
        guessed_right < tokens.len() - 1,
        "{model_name}: seq2 should disagree with the argmax somewhere, or the test checks nothing"
    );
}
