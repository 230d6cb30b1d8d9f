//! Chapter 4 tests. Run them with `cargo xtask test rmsnorm-mlp` (add `--task N` for one task).
//! Expected values come from MLX (`fast::rms_norm`, `nn::silu`, matmul) and from HF transformers
//! (the tiny models' reference tensors in models/fixtures/).

use mlx_rs::{fast, nn, Array, Dtype};
use rmsnorm_mlp::{
    silu, Attention, AttentionConfig, AttentionWeights, Mask, Mlp, Offset, RmsNorm,
    TransformerBlock,
};
use rstest::rstest;
use test_support::{
    assert_allclose, expect_ok, load_tiny_model, random_array, TinyModel, Tolerance, TINY_MODELS,
};

/// An RMSNorm weight like a trained one: around 1.
fn norm_weight(size: i32, dtype: Dtype, seed: u64) -> Array {
    random_array(&[size], Dtype::Float32, seed)
        .multiply(Array::from_f32(0.1))
        .and_then(|w| w.add(Array::from_f32(1.0)))
        .and_then(|w| w.as_dtype(dtype))
        .unwrap()
}

fn scaled(x: Array, factor: f32) -> Array {
    x.multiply(Array::from_f32(factor)).unwrap()
}

fn check_rms_norm(x: &Array, eps: f32, what: &str) {
    let features = *x.shape().last().unwrap();
    let weight = norm_weight(features, x.dtype(), 51);
    let norm = RmsNorm::new(weight.clone(), eps);
    let got = expect_ok(norm.forward(x), "RmsNorm::forward");
    assert_eq!(got.dtype(), x.dtype(), "RmsNorm must keep the input dtype");
    let expected = fast::rms_norm(x, Some(&weight), eps).unwrap();
    assert_allclose(&got, &expected, Tolerance::for_dtype(x.dtype()), what);
}

#[rstest]
#[case::vector(&[16], 1e-5, Dtype::Float32)]
#[case::matrix(&[4, 64], 1e-6, Dtype::Float32)]
#[case::batch_of_sequences(&[2, 3, 64], 1e-5, Dtype::Float32)]
#[case::smollm2_width(&[1, 5, 576], 1e-5, Dtype::Float32)]
#[case::float16(&[2, 5, 32], 1e-6, Dtype::Float16)]
#[case::bfloat16(&[3, 16], 1e-5, Dtype::Bfloat16)]
fn task_1_rms_norm_matches_mlx_fast_rms_norm(
    #[case] shape: &[i32],
    #[case] eps: f32,
    #[case] dtype: Dtype,
) {
    let x = random_array(shape, dtype, 52);
    check_rms_norm(&x, eps, &format!("rms_norm of {shape:?} {dtype:?}"));
}

/// float16 tops out at 65504 and flushes values below 6e-8 to zero: the squares of values
/// around 300 overflow, those of values around 1e-4 vanish. Only a mean square computed in
/// float32 gets either right.
#[rstest]
#[case::large_values(300.0)]
#[case::tiny_values(1e-4)]
fn task_1_rms_norm_accumulates_float16_in_float32(#[case] magnitude: f32) {
    let x = scaled(random_array(&[2, 4, 64], Dtype::Float32, 53), magnitude)
        .as_dtype(Dtype::Float16)
        .unwrap();
    check_rms_norm(
        &x,
        1e-6,
        &format!("float16 rms_norm of values around {magnitude}"),
    );
}

#[test]
fn task_1_rms_norm_rejects_a_weight_of_the_wrong_size() {
    let norm = RmsNorm::new(norm_weight(8, Dtype::Float32, 54), 1e-5);
    let x = random_array(&[2, 16], Dtype::Float32, 55);
    assert!(
        norm.forward(&x).is_err(),
        "a weight of 8 features cannot normalize x with 16"
    );
}

#[rstest]
#[case::vector(&[10], 1.0, Dtype::Float32)]
#[case::batch(&[2, 3, 32], 1.0, Dtype::Float32)]
#[case::large_values(&[64], 20.0, Dtype::Float32)]
#[case::float16(&[4, 16], 4.0, Dtype::Float16)]
#[case::bfloat16(&[4, 16], 4.0, Dtype::Bfloat16)]
fn task_2_silu_matches_mlx_silu(#[case] shape: &[i32], #[case] spread: f32, #[case] dtype: Dtype) {
    let x = scaled(random_array(shape, Dtype::Float32, 56), spread)
        .as_dtype(dtype)
        .unwrap();
    let got = expect_ok(silu(&x), "silu");
    assert_eq!(got.dtype(), dtype, "silu must keep the input dtype");
    let expected = nn::silu(&x).unwrap();
    assert_allclose(
        &got,
        &expected,
        Tolerance::for_dtype(dtype),
        &format!("silu of {shape:?} {dtype:?} values spread by {spread}"),
    );
}

/// `[out, in]` weights scaled by `1/sqrt(in)`, so that activations keep their size.
fn random_weight(shape: &[i32], dtype: Dtype, seed: u64) -> Array {
    scaled(
        random_array(shape, Dtype::Float32, seed),
        1.0 / (shape[1] as f32).sqrt(),
    )
    .as_dtype(dtype)
    .unwrap()
}

#[rstest]
#[case::tokens(&[3, 16], 32, Dtype::Float32)]
#[case::batch_of_sequences(&[2, 4, 64], 128, Dtype::Float32)]
#[case::float16(&[2, 3, 32], 64, Dtype::Float16)]
fn task_3_mlp_matches_mlx_ops(
    #[case] shape: &[i32],
    #[case] intermediate: i32,
    #[case] dtype: Dtype,
) {
    let hidden = *shape.last().unwrap();
    let x = random_array(shape, dtype, 57);
    let gate = random_weight(&[intermediate, hidden], dtype, 58);
    let up = random_weight(&[intermediate, hidden], dtype, 59);
    let down = random_weight(&[hidden, intermediate], dtype, 60);
    let mlp = Mlp::new(gate.clone(), up.clone(), down.clone());
    let got = expect_ok(mlp.forward(&x), "Mlp::forward");
    let gated = nn::silu(x.matmul(gate.t()).unwrap())
        .unwrap()
        .multiply(x.matmul(up.t()).unwrap())
        .unwrap();
    let expected = gated.matmul(down.t()).unwrap();
    assert_allclose(
        &got,
        &expected,
        Tolerance::for_dtype(dtype),
        &format!("mlp of {shape:?} through {intermediate} features, {dtype:?}"),
    );
}

#[test]
fn task_3_mlp_rejects_misshapen_weights() {
    let gate = random_weight(&[32, 16], Dtype::Float32, 61);
    let down = random_weight(&[32, 16], Dtype::Float32, 62);
    let mlp = Mlp::new(gate.clone(), gate, down);
    let x = random_array(&[2, 16], Dtype::Float32, 63);
    let error = mlp
        .forward(&x)
        .expect_err("down_proj [32, 16] must be rejected: it must map 32 features back to 16")
        .to_string();
    assert!(
        error.contains("down_proj"),
        "the error should name the bad weight: {error}"
    );
}

/// The residual stream before layer `layer` of sequence `seq`: the embeddings, or the output of
/// the layer before. `[1, L, E]`.
fn residual_before(model: &TinyModel, seq: usize, layer: i32) -> Array {
    match layer {
        0 => model.reference(&format!("seq{seq}.embeddings")),
        _ => model.reference(&format!("seq{seq}.layer{}.output", layer - 1)),
    }
    .expand_dims(0)
    .unwrap()
}

fn layer_weight(model: &TinyModel, layer: i32, name: &str) -> Array {
    model.weight(&format!("model.layers.{layer}.{name}"))
}

fn tiny_mlp(model: &TinyModel, layer: i32) -> Mlp {
    Mlp::new(
        layer_weight(model, layer, "mlp.gate_proj.weight"),
        layer_weight(model, layer, "mlp.up_proj.weight"),
        layer_weight(model, layer, "mlp.down_proj.weight"),
    )
}

/// The reference is float32 PyTorch, which sums the products of every projection in another
/// order than MLX. models/fixtures/generate.py checks it against a float64 NumPy model to within
/// 1e-5 of the tensor's largest value (or of 1), so allow that much absolute difference here.
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

/// HF's MLP output for every layer and sequence. Its input is the residual stream after the
/// attention (residual before the layer + attention output, both from the reference),
/// normalized by post_attention_layernorm (computed here with fast::rms_norm).
#[rstest]
#[case::llama(TINY_MODELS[0])]
#[case::qwen2(TINY_MODELS[1])]
#[case::qwen3(TINY_MODELS[2])]
fn task_3_mlp_matches_hf(#[case] model: &str) {
    let model = load_tiny_model(model);
    for seq in 0..model.sequences() {
        for layer in 0..model.config.num_hidden_layers {
            let attention = model
                .reference(&format!("seq{seq}.layer{layer}.attention_output"))
                .expand_dims(0)
                .unwrap();
            let residual = residual_before(&model, seq, layer).add(attention).unwrap();
            let norm = layer_weight(&model, layer, "post_attention_layernorm.weight");
            let x = fast::rms_norm(&residual, Some(&norm), model.config.rms_norm_eps).unwrap();
            let got = expect_ok(tiny_mlp(&model, layer).forward(&x), "Mlp::forward");
            let expected = model
                .reference(&format!("seq{seq}.layer{layer}.mlp_output"))
                .expand_dims(0)
                .unwrap();
            let what = format!("{} mlp of layer {layer}, sequence {seq}", model.name);
            assert_allclose(&got, &expected, hf_tolerance(&expected), &what);
        }
    }
}

/// Layer `layer` of a tiny model, every weight read by its HF name.
fn tiny_block(model: &TinyModel, layer: i32) -> TransformerBlock {
    let c = &model.config;
    let config = AttentionConfig {
        hidden_size: c.hidden_size,
        num_heads: c.num_attention_heads,
        num_kv_heads: c.num_key_value_heads,
        head_dim: c.head_dim,
        rope_theta: c.rope_theta,
        rms_norm_eps: c.rms_norm_eps,
    };
    let attention_weight = |name: &str| format!("model.layers.{layer}.self_attn.{name}");
    let weights = AttentionWeights {
        q_proj: model.weight(&attention_weight("q_proj.weight")),
        k_proj: model.weight(&attention_weight("k_proj.weight")),
        v_proj: model.weight(&attention_weight("v_proj.weight")),
        o_proj: model.weight(&attention_weight("o_proj.weight")),
        q_bias: model.maybe_weight(&attention_weight("q_proj.bias")),
        k_bias: model.maybe_weight(&attention_weight("k_proj.bias")),
        v_bias: model.maybe_weight(&attention_weight("v_proj.bias")),
        q_norm: model.maybe_weight(&attention_weight("q_norm.weight")),
        k_norm: model.maybe_weight(&attention_weight("k_norm.weight")),
    };
    let attention = expect_ok(Attention::new(config, weights), "Attention::new");
    let norm = |name: &str| RmsNorm::new(layer_weight(model, layer, name), c.rms_norm_eps);
    TransformerBlock::new(
        norm("input_layernorm.weight"),
        attention,
        norm("post_attention_layernorm.weight"),
        tiny_mlp(model, layer),
    )
}

/// HF's residual stream after every layer of every sequence, from the stream before it.
#[rstest]
#[case::llama(TINY_MODELS[0])]
#[case::qwen2(TINY_MODELS[1])]
#[case::qwen3(TINY_MODELS[2])]
fn task_4_transformer_block_matches_hf(#[case] model: &str) {
    let model = load_tiny_model(model);
    for seq in 0..model.sequences() {
        for layer in 0..model.config.num_hidden_layers {
            let x = residual_before(&model, seq, layer);
            let got = expect_ok(
                tiny_block(&model, layer).forward(&x, Offset::Start(0), Mask::Causal),
                "TransformerBlock::forward",
            );
            let expected = model
                .reference(&format!("seq{seq}.layer{layer}.output"))
                .expand_dims(0)
                .unwrap();
            let what = format!(
                "{} block {layer}, sequence {seq} ({} tokens)",
                model.name,
                x.shape()[1]
            );
            assert_allclose(&got, &expected, hf_tolerance(&expected), &what);
        }
    }
}
