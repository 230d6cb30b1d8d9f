//! Task 4: Model::forward

use crate::harness::{concatenate, load_model, SMOLLM2, TINY_LOGITS};
use kv_cache::{Kernels, KvCache, Model, STEP};
use mlx_rs::{ops, ops::indexing::IndexOp, Array, Dtype};
use rstest::rstest;
use test_support::{
    assert_allclose, expect_ok as ok, expect_ok, fetched_model_dir, fixture_path, load_fixture,
    Tolerance,
};

fn tokens_array(tokens: &[u32]) -> Array {
    Array::from_slice(tokens, &[1, tokens.len() as i32]) // [1, L]
}

/// Log-probabilities of logits `[..., V]`, to compare SmolLM2 as chapter 5 does.
fn log_probabilities(logits: &Array) -> Array {
    let lse = ops::logsumexp_axis(logits, -1, true).unwrap();
    logits.subtract(&lse).unwrap()
}

/// Runs `tokens` `[B, L]` through `model` as a prefill of `prefill` tokens then one token per
/// step, and returns the logits joined back into `[B, L, V]`.
fn prefill_then_decode(model: &Model, tokens: &Array, prefill: i32) -> (Array, Vec<KvCache>) {
    let mut cache = model.new_cache();
    let length = tokens.shape()[1];
    let mut logits = vec![expect_ok(
        model.forward(&tokens.index((.., ..prefill)), &mut cache),
        "Model::forward (prefill)",
    )];
    for position in prefill..length {
        logits.push(expect_ok(
            model.forward(&tokens.index((.., position..position + 1)), &mut cache),
            "Model::forward (one token)",
        ));
    }
    (concatenate(&logits, 1), cache)
}

#[rstest]
#[case::one_token(0, 1)]
#[case::seq1_prefill_1(1, 1)]
#[case::seq1_prefill_6(1, 6)]
#[case::seq1_prefill_all(1, 7)]
#[case::seq2_prefill_1(2, 1)]
#[case::seq2_prefill_3(2, 3)]
#[case::seq2_prefill_15(2, 15)]
#[case::seq2_prefill_all(2, 16)]
fn task_4_prefill_then_decode_matches_transformers(
    #[values("llama-tiny", "qwen2-tiny", "qwen3-tiny")] model_name: &str,
    #[values(Kernels::Course, Kernels::Fused)] kernels: Kernels,
    #[case] sequence: usize,
    #[case] prefill: i32,
) {
    // Fused: your forward pass and cache around MLX's norm, RoPE and attention kernels.
    let model = load_model(&fixture_path(model_name)).with_kernels(kernels);
    let reference = load_fixture(&format!("{model_name}/reference.safetensors"));
    let tokens = reference[&format!("seq{sequence}.tokens")]
        .expand_dims(0)
        .unwrap(); // [1, L]
    let (logits, cache) = prefill_then_decode(&model, &tokens, prefill);
    assert_eq!(logits.dtype(), Dtype::Float32, "logits are float32");
    assert_allclose(
        &logits.index(0),
        &reference[&format!("seq{sequence}.logits")],
        TINY_LOGITS,
        &format!(
            "{model_name} logits of seq{sequence} ({kernels:?} kernels, prefill {prefill}, then one token per step)"
        ),
    );
    let length = tokens.shape()[1];
    for (layer, layer_cache) in cache.iter().enumerate() {
        assert_eq!(
            layer_cache.offset(),
            length,
            "layer {layer}'s cache should hold all {length} positions"
        );
    }
}

/// Two different sequences in one batch: seq1 (7 tokens) and the first 7 tokens of seq2, whose
/// logits are HF's first 7 positions of seq2 (attention is causal).
#[rstest]
fn task_4_a_batch_of_two_sequences_matches_transformers(
    #[values("llama-tiny", "qwen2-tiny", "qwen3-tiny")] model_name: &str,
) {
    let model = load_model(&fixture_path(model_name));
    let reference = load_fixture(&format!("{model_name}/reference.safetensors"));
    let rows = [
        reference["seq1.tokens"].clone(),
        reference["seq2.tokens"].index(..7),
    ];
    let tokens = ok(ops::stack(&rows, 0), "ops::stack"); // [2, 7]
    let (logits, _) = prefill_then_decode(&model, &tokens, 4);
    let expected = [
        reference["seq1.logits"].clone(),
        reference["seq2.logits"].index(..7),
    ];
    for (row, expected) in expected.iter().enumerate() {
        assert_allclose(
            &logits.index(row as i32),
            expected,
            TINY_LOGITS,
            &format!("{model_name} logits of batch row {row} (prefill 4, then one token per step)"),
        );
    }
}

/// After a prefill, each layer's cache holds `H_kv` heads (not repeated to `H_q`) in float32:
/// layers x 2 x kv_heads x head_dim x capacity x 4 bytes.
#[rstest]
fn task_4_the_cache_holds_kv_heads_only(
    #[values("llama-tiny", "qwen2-tiny", "qwen3-tiny")] model_name: &str,
) {
    let model = load_model(&fixture_path(model_name));
    let reference = load_fixture(&format!("{model_name}/reference.safetensors"));
    let tokens = reference["seq2.tokens"].expand_dims(0).unwrap(); // [1, 16]
    let mut cache = model.new_cache();
    expect_ok(model.forward(&tokens, &mut cache), "Model::forward");
    let config = model.config();
    let expected = config.num_hidden_layers as usize
        * 2
        * config.num_key_value_heads as usize
        * config.head_dim as usize
        * STEP as usize
        * 4;
    let total: usize = cache.iter().map(KvCache::nbytes).sum();
    assert_eq!(
        total, expected,
        "{model_name}: {} layers x 2 x {} kv heads x head_dim {} x capacity {STEP} x 4 bytes",
        config.num_hidden_layers, config.num_key_value_heads, config.head_dim
    );
}

#[rstest]
#[case::one_layer_short(-1)]
#[case::one_layer_too_many(1)]
fn task_4_a_cache_of_the_wrong_length_is_an_error(#[case] extra: i32) {
    let model = load_model(&fixture_path("llama-tiny"));
    let layers = model.config().num_hidden_layers + extra;
    let mut cache: Vec<KvCache> = (0..layers).map(|_| KvCache::new()).collect();
    assert!(
        model
            .forward(&tokens_array(&[300, 385]), &mut cache)
            .is_err(),
        "a cache of {layers} layers for a model of {} must be an Err",
        model.config().num_hidden_layers
    );
}

/// SmolLM2's prompts, all but the last `stepped` tokens as a prefill and the rest one at a time:
/// the last logits against transformers' (which ran each prompt at once).
#[test]
fn task_4_smollm2_stepped_prompts_match_transformers() {
    let Some(dir) = fetched_model_dir(SMOLLM2) else {
        return;
    };
    let model = load_model(&dir);
    let reference = load_fixture("smollm2/reference.safetensors");
    let stepped = 3;
    for prompt in 0.. {
        let Some(tokens) = reference.get(&format!("prompt{prompt}.tokens")) else {
            break;
        };
        let tokens = tokens.expand_dims(0).unwrap(); // [1, L]
        let (logits, _) = prefill_then_decode(&model, &tokens, tokens.shape()[1] - stepped);
        let last = logits.index((0, -1)); // [V]
        let expected = &reference[&format!("prompt{prompt}.last_logits")];
        // As in chapter 5: 30 float32 layers differ by up to 5e-5; 1e-3 is far below the top-2
        // margins (> 0.016).
        let tolerance = Tolerance {
            rtol: 0.0,
            atol: 1e-3,
        };
        assert_allclose(
            &log_probabilities(&last),
            &log_probabilities(expected),
            tolerance,
            &format!(
                "SmolLM2 log-probabilities of prompt {prompt} (last {stepped} tokens stepped)"
            ),
        );
    }
}
