//! Task 3: CachedAttention::forward

use crate::harness::concatenate;
use kv_cache::{AttentionConfig, AttentionLayers, CachedAttention, DenseLinear, KvCache, Linear};
use mlx_rs::{fast, ops::indexing::IndexOp, Array};
use rstest::rstest;
use test_support::{assert_allclose, expect_ok, load_tiny_model, TinyModel, Tolerance};

/// Layer `layer`'s attention of a tiny model, its weights read by their HF names.
fn attention_layer(model: &TinyModel, layer: i32) -> CachedAttention {
    let c = &model.config;
    let config = AttentionConfig {
        hidden_size: c.hidden_size,
        num_heads: c.num_attention_heads,
        num_kv_heads: c.num_key_value_heads,
        head_dim: c.head_dim,
        rope_theta: c.rope_theta,
        rms_norm_eps: c.rms_norm_eps,
    };
    let name = |part: &str| format!("model.layers.{layer}.self_attn.{part}");
    let linear = |projection: &str| -> Box<dyn Linear> {
        Box::new(DenseLinear::new(
            model.weight(&name(&format!("{projection}.weight"))),
            model.maybe_weight(&name(&format!("{projection}.bias"))),
        ))
    };
    let layers = AttentionLayers {
        q_proj: linear("q_proj"),
        k_proj: linear("k_proj"),
        v_proj: linear("v_proj"),
        o_proj: linear("o_proj"),
        q_norm: model.maybe_weight(&name("q_norm.weight")),
        k_norm: model.maybe_weight(&name("k_norm.weight")),
    };
    CachedAttention::new(config, layers)
}

/// The reference is float32 PyTorch, checked against a float64 NumPy model to within 1e-5 of the
/// tensor's largest value (or of 1) by models/fixtures/generate.py: allow that much difference.
fn hf_tolerance(expected: &Array) -> Tolerance {
    let largest = expected
        .abs()
        .unwrap()
        .max(None)
        .unwrap()
        .item_exact::<f32>();
    Tolerance {
        rtol: 1e-5,
        atol: 1e-5 * f64::from(largest.max(1.0)),
    }
}

/// Runs `x` `[1, L, E]` through `attention` as a prefill of `prefill` tokens, then chunks of
/// `chunk` tokens, and returns the outputs joined back into `[1, L, E]`.
fn run_in_chunks(
    attention: &CachedAttention,
    x: &Array,
    prefill: i32,
    chunk: i32,
    cache: &mut KvCache,
) -> Array {
    let length = x.shape()[1];
    let mut outputs = Vec::new();
    let mut start = 0;
    while start < length {
        let end = if start == 0 {
            prefill
        } else {
            (start + chunk).min(length)
        };
        let part = x.index((.., start..end, ..));
        outputs.push(expect_ok(
            attention.forward(&part, cache),
            "CachedAttention::forward",
        ));
        start = end;
    }
    concatenate(&outputs, 1)
}

/// Every layer of a tiny model on sequence 2 (16 tokens), fed in pieces, against HF's attention
/// output for the whole sequence at once. The input of layer n's attention is the residual
/// stream before the layer (HF's embeddings, or HF's output of layer n-1), normalized by the
/// layer's input_layernorm (computed here with fast::rms_norm).
#[rstest]
#[case::prefill_1_then_single_tokens(1, 1)]
#[case::prefill_3_then_single_tokens(3, 1)]
#[case::prefill_15_then_one_token(15, 1)]
#[case::whole_sequence(16, 1)]
#[case::prefill_5_then_chunks_of_4(5, 4)]
fn task_3_cached_attention_matches_transformers(
    #[values("llama-tiny", "qwen2-tiny", "qwen3-tiny")] model: &str,
    #[case] prefill: i32,
    #[case] chunk: i32,
) {
    let model = load_tiny_model(model);
    let sequence = 2;
    for layer in 0..model.config.num_hidden_layers {
        let residual = match layer {
            0 => model.reference(&format!("seq{sequence}.embeddings")),
            _ => model.reference(&format!("seq{sequence}.layer{}.output", layer - 1)),
        }
        .expand_dims(0) // [1, L, E]
        .unwrap();
        let norm = model.weight(&format!("model.layers.{layer}.input_layernorm.weight"));
        let x = fast::rms_norm(&residual, Some(&norm), model.config.rms_norm_eps).unwrap();
        let mut cache = KvCache::new();
        let got = run_in_chunks(
            &attention_layer(&model, layer),
            &x,
            prefill,
            chunk,
            &mut cache,
        );
        let expected = model
            .reference(&format!("seq{sequence}.layer{layer}.attention_output"))
            .expand_dims(0)
            .unwrap();
        // PyTorch sums the float32 products in another order than MLX, and here the new
        // tokens' products are summed in pieces: as in chapter 4, allow 1e-5 of the largest value.
        let tolerance = hf_tolerance(&expected);
        let what = format!(
            "{} attention of layer {layer} (prefill {prefill}, then chunks of {chunk})",
            model.name
        );
        assert_allclose(&got, &expected, tolerance, &what);
        assert_eq!(
            cache.offset(),
            x.shape()[1],
            "{what}: the cache should hold every position"
        );
    }
}
