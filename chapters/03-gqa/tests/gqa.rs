//! Chapter 3 tests. Run them with `cargo xtask test gqa` (add `--task N` for one task).
//! Expected values come from MLX's fused kernels (`fast::scaled_dot_product_attention`,
//! `fast::rope`) and from HF transformers (the tiny models' reference tensors in models/fixtures/).

use gqa::{
    causal_mask, scaled_dot_product_attention_grouped, Attention, AttentionConfig,
    AttentionWeights, Mask, Offset,
};
use mlx_rs::{
    fast::{self, ScaledDotProductAttentionMask},
    ops, Array, Dtype,
};
use rstest::rstest;
use test_support::{
    assert_allclose, expect_ok, load_tiny_model, random_array, TinyModel, Tolerance, TINY_MODELS,
};

const O: f32 = 0.0;
const X: f32 = f32::NEG_INFINITY;

fn values(array: &Array) -> Vec<f32> {
    let values = array.as_dtype(Dtype::Float32).unwrap();
    values.eval().unwrap();
    values.as_slice::<f32>().to_vec()
}

#[rstest]
#[case::one_by_one(1, 1, &[O])]
#[case::square(3, 3, &[O, X, X, O, O, X, O, O, O])]
#[case::two_new_tokens_after_two(2, 4, &[O, O, O, X, O, O, O, O])]
#[case::one_new_token_sees_everything(1, 5, &[O, O, O, O, O])]
#[case::three_after_one(3, 4, &[O, O, X, X, O, O, O, X, O, O, O, O])]
fn task_1_causal_mask_matches_the_definition(
    #[case] queries: i32,
    #[case] keys: i32,
    #[case] expected: &[f32],
) {
    let mask = expect_ok(causal_mask(queries, keys, Dtype::Float32), "causal_mask");
    assert_eq!(
        mask.shape(),
        [queries, keys],
        "causal_mask({queries}, {keys}) must be [queries, keys]"
    );
    assert_eq!(
        values(&mask),
        expected,
        "causal_mask({queries}, {keys}), row by row (0 = visible, -inf = hidden)"
    );
}

#[rstest]
#[case::float16(Dtype::Float16)]
#[case::bfloat16(Dtype::Bfloat16)]
fn task_1_causal_mask_has_the_requested_dtype(#[case] dtype: Dtype) {
    let mask = expect_ok(causal_mask(2, 3, dtype), "causal_mask");
    assert_eq!(
        mask.dtype(),
        dtype,
        "causal_mask must return the dtype asked for"
    );
    assert_eq!(values(&mask), [O, O, X, O, O, O], "causal_mask(2, 3)");
}

#[test]
fn task_1_causal_mask_rejects_more_queries_than_keys() {
    assert!(
        causal_mask(5, 3, Dtype::Float32).is_err(),
        "5 queries over 3 keys: the first two queries would see nothing"
    );
}

#[derive(Clone, Copy, Debug)]
enum MaskKind {
    None,
    Causal,
    /// One random additive `[L, S]` mask for every head.
    Shared,
    /// A random additive `[B, H_q, L, S]` mask, different for every query head.
    PerHead,
}

/// The cases' first column: `[B, H_q, H_kv, L, S, D]`.
#[rstest]
#[case::one_head_per_kv_head([2, 4, 4, 5, 5, 16], None, MaskKind::None, Dtype::Float32)]
#[case::two_per_kv_head_causal([1, 4, 2, 6, 6, 16], None, MaskKind::Causal, Dtype::Float32)]
#[case::four_per_kv_head_prefix([2, 8, 2, 3, 9, 32], None, MaskKind::Causal, Dtype::Float32)]
#[case::three_per_kv_head_mask([1, 6, 2, 4, 7, 8], Some(0.3), MaskKind::Shared, Dtype::Float32)]
#[case::per_head_mask([2, 4, 2, 3, 5, 16], None, MaskKind::PerHead, Dtype::Float32)]
#[case::smollm2_decode_step([3, 9, 3, 1, 12, 64], None, MaskKind::Causal, Dtype::Float32)]
#[case::multi_query([1, 4, 1, 4, 6, 16], None, MaskKind::Causal, Dtype::Float32)]
#[case::float16_causal([1, 4, 2, 8, 8, 32], None, MaskKind::Causal, Dtype::Float16)]
#[case::float16_shared_mask([2, 6, 3, 4, 6, 16], None, MaskKind::Shared, Dtype::Float16)]
fn task_2_grouped_attention_matches_mlx_fast_attention(
    #[case] sizes: [i32; 6],
    #[case] scale: Option<f32>,
    #[case] mask: MaskKind,
    #[case] dtype: Dtype,
) {
    let [batch, heads, kv_heads, queries, keys, depth] = sizes;
    let q = random_array(&[batch, heads, queries, depth], dtype, 31);
    let k = random_array(&[batch, kv_heads, keys, depth], dtype, 32);
    let v = random_array(&[batch, kv_heads, keys, depth], dtype, 33);
    let mask_values = match mask {
        MaskKind::None | MaskKind::Causal => None,
        MaskKind::Shared => Some(random_array(&[queries, keys], dtype, 34)),
        MaskKind::PerHead => Some(random_array(&[batch, heads, queries, keys], dtype, 35)),
    };
    let mask_argument = match (mask, &mask_values) {
        (MaskKind::Causal, _) => Mask::Causal,
        (_, Some(values)) => Mask::Array(values),
        (_, None) => Mask::None,
    };
    let got = expect_ok(
        scaled_dot_product_attention_grouped(&q, &k, &v, scale, mask_argument),
        "scaled_dot_product_attention_grouped",
    );
    assert_eq!(got.dtype(), dtype, "attention must keep the input dtype");

    let scale = scale.unwrap_or(1.0 / (depth as f32).sqrt());
    let expected = match (mask, &mask_values) {
        (MaskKind::Causal, _) => fast::scaled_dot_product_attention(
            &q,
            &k,
            &v,
            scale,
            ScaledDotProductAttentionMask::Causal,
            None,
        ),
        (_, Some(values)) => fast::scaled_dot_product_attention(&q, &k, &v, scale, values, None),
        (_, None) => fast::scaled_dot_product_attention(&q, &k, &v, scale, None, None),
    }
    .unwrap();
    let what = format!(
        "grouped attention (B {batch}, H_q {heads}, H_kv {kv_heads}, L {queries}, S {keys}, D {depth}, mask {mask:?})"
    );
    assert_allclose(&got, &expected, Tolerance::for_dtype(dtype), &what);
}

#[test]
fn task_2_grouped_attention_rejects_heads_that_do_not_share_evenly() {
    let q = random_array(&[1, 6, 2, 8], Dtype::Float32, 36);
    let kv = random_array(&[1, 4, 2, 8], Dtype::Float32, 37);
    assert!(
        scaled_dot_product_attention_grouped(&q, &kv, &kv, None, Mask::None).is_err(),
        "6 query heads cannot share 4 key/value heads"
    );
}

/// `[out, in]` weights scaled by `1/sqrt(in)`, so that activations keep their size.
fn random_weight(shape: &[i32], seed: u64) -> Array {
    random_array(shape, Dtype::Float32, seed)
        .multiply(Array::from_f32(1.0 / (shape[1] as f32).sqrt()))
        .unwrap()
}

/// A random attention layer; `qwen2` adds biases, `qwen3` q/k norms.
fn random_layer(config: AttentionConfig, qwen2: bool, qwen3: bool) -> AttentionWeights {
    let AttentionConfig {
        hidden_size: e,
        num_heads: h,
        num_kv_heads: kv,
        head_dim: d,
        ..
    } = config;
    let bias = |size: i32, seed: u64| qwen2.then(|| random_array(&[size], Dtype::Float32, seed));
    let norm = |seed: u64| {
        qwen3.then(|| {
            random_array(&[d], Dtype::Float32, seed)
                .multiply(Array::from_f32(0.1))
                .unwrap()
                .add(Array::from_f32(1.0))
                .unwrap()
        })
    };
    AttentionWeights {
        q_proj: random_weight(&[h * d, e], 40),
        k_proj: random_weight(&[kv * d, e], 41),
        v_proj: random_weight(&[kv * d, e], 42),
        o_proj: random_weight(&[e, h * d], 43),
        q_bias: bias(h * d, 44),
        k_bias: bias(kv * d, 45),
        v_bias: bias(kv * d, 46),
        q_norm: norm(47),
        k_norm: norm(48),
    }
}

/// The same layer from MLX's fused kernels: `fast::rope` (one row at a time, for per-row
/// offsets), `fast::rms_norm` and `fast::scaled_dot_product_attention` with its causal mode.
fn fused_attention_layer(
    x: &Array,
    config: AttentionConfig,
    weights: &AttentionWeights,
    starts: &[i32],
) -> Array {
    let (batch, length) = (x.shape()[0], x.shape()[1]);
    let d = config.head_dim;
    let project = |w: &Array, bias: &Option<Array>, heads: i32| {
        let y = x.matmul(w.t()).unwrap();
        let y = match bias {
            Some(bias) => y.add(bias).unwrap(),
            None => y,
        };
        y.reshape(&[batch, length, heads, d])
            .unwrap()
            .swap_axes(1, 2) // [B, H, L, D]
            .unwrap()
    };
    let rotate = |x: Array, norm: &Option<Array>| {
        let x = match norm {
            Some(norm) => fast::rms_norm(&x, Some(norm), config.rms_norm_eps).unwrap(),
            None => x,
        };
        let rows: Vec<Array> = x
            .split_equal(batch, 0)
            .unwrap()
            .iter()
            .zip(starts)
            .map(|(row, &start)| {
                fast::rope(row, d, false, config.rope_theta, 1.0, start, None).unwrap()
            })
            .collect();
        ops::concatenate(&rows, 0).unwrap()
    };
    let q = rotate(
        project(&weights.q_proj, &weights.q_bias, config.num_heads),
        &weights.q_norm,
    );
    let k = rotate(
        project(&weights.k_proj, &weights.k_bias, config.num_kv_heads),
        &weights.k_norm,
    );
    let v = project(&weights.v_proj, &weights.v_bias, config.num_kv_heads);
    let scale = 1.0 / (d as f32).sqrt();
    let out = fast::scaled_dot_product_attention(
        q,
        k,
        v,
        scale,
        ScaledDotProductAttentionMask::Causal,
        None,
    )
    .unwrap() // [B, H, L, D]
    .swap_axes(1, 2)
    .unwrap()
    .reshape(&[batch, length, config.num_heads * d])
    .unwrap();
    out.matmul(weights.o_proj.t()).unwrap()
}

fn config(hidden_size: i32, num_heads: i32, num_kv_heads: i32, head_dim: i32) -> AttentionConfig {
    AttentionConfig {
        hidden_size,
        num_heads,
        num_kv_heads,
        head_dim,
        rope_theta: 10000.0,
        rms_norm_eps: 1e-6,
    }
}

fn check_random_layer(
    config: AttentionConfig,
    qwen2: bool,
    qwen3: bool,
    length: i32,
    offset: Offset,
) {
    let starts: Vec<i32> = match offset {
        Offset::Start(start) => vec![start; 2],
        Offset::PerRow(starts) => starts.to_vec(),
    };
    let weights = random_layer(config, qwen2, qwen3);
    let x = random_array(
        &[starts.len() as i32, length, config.hidden_size],
        Dtype::Float32,
        49,
    );
    let layer = expect_ok(Attention::new(config, weights.clone()), "Attention::new");
    let got = expect_ok(
        layer.forward(&x, offset, Mask::Causal),
        "Attention::forward",
    );
    let expected = fused_attention_layer(&x, config, &weights, &starts);
    let what = format!("attention layer ({config:?}, {length} tokens, offset {offset:?})");
    assert_allclose(&got, &expected, Tolerance::F32, &what);
}

#[rstest]
#[case::grouped(config(32, 4, 2, 8), 5, Offset::Start(0))]
#[case::one_kv_head_per_query_head(config(32, 4, 4, 8), 3, Offset::Start(0))]
#[case::with_offset(config(64, 8, 2, 16), 4, Offset::Start(9))]
#[case::per_row_offsets(config(32, 4, 2, 8), 3, Offset::PerRow(&[0, 6]))]
#[case::head_dim_larger_than_hidden_over_heads(config(32, 4, 2, 16), 4, Offset::Start(2))]
fn task_3_attention_layer_matches_mlx_fused_ops(
    #[case] config: AttentionConfig,
    #[case] length: i32,
    #[case] offset: Offset,
) {
    check_random_layer(config, false, false, length, offset);
}

#[test]
fn task_3_attention_layer_rejects_misshapen_weights() {
    let good = config(32, 4, 2, 8);
    let mut weights = random_layer(good, false, false);
    weights.k_proj = random_weight(&[32, 32], 50);
    let error = Attention::new(good, weights)
        .err()
        .expect("k_proj [32, 32] must be rejected when H_kv * D = 16")
        .to_string();
    assert!(
        error.contains("k_proj"),
        "the error should name the bad weight: {error}"
    );
    let uneven = config(24, 3, 2, 8);
    assert!(
        Attention::new(uneven, random_layer(uneven, false, false)).is_err(),
        "3 query heads cannot share 2 key/value heads"
    );
}

/// Layer `layer` of a tiny model, its weights read by their HF names.
fn attention_layer(model: &TinyModel, layer: i32) -> Attention {
    let c = &model.config;
    let config = AttentionConfig {
        hidden_size: c.hidden_size,
        num_heads: c.num_attention_heads,
        num_kv_heads: c.num_key_value_heads,
        head_dim: c.head_dim,
        rope_theta: c.rope_theta,
        rms_norm_eps: c.rms_norm_eps,
    };
    let name = |weight: &str| format!("model.layers.{layer}.self_attn.{weight}");
    let weights = AttentionWeights {
        q_proj: model.weight(&name("q_proj.weight")),
        k_proj: model.weight(&name("k_proj.weight")),
        v_proj: model.weight(&name("v_proj.weight")),
        o_proj: model.weight(&name("o_proj.weight")),
        q_bias: model.maybe_weight(&name("q_proj.bias")),
        k_bias: model.maybe_weight(&name("k_proj.bias")),
        v_bias: model.maybe_weight(&name("v_proj.bias")),
        q_norm: model.maybe_weight(&name("q_norm.weight")),
        k_norm: model.maybe_weight(&name("k_norm.weight")),
    };
    expect_ok(Attention::new(config, weights), "Attention::new")
}

/// Every layer of every test sequence of a tiny model against HF's attention output. The input
/// of layer n's attention is the residual stream before the layer (the embeddings, or layer
/// n-1's output), normalized by the layer's input_layernorm (computed here with fast::rms_norm).
fn check_against_hf(model: &str) {
    let model = load_tiny_model(model);
    for seq in 0..model.sequences() {
        for layer in 0..model.config.num_hidden_layers {
            let residual = match layer {
                0 => model.reference(&format!("seq{seq}.embeddings")),
                _ => model.reference(&format!("seq{seq}.layer{}.output", layer - 1)),
            }
            .expand_dims(0) // [1, L, E]
            .unwrap();
            let norm = model.weight(&format!("model.layers.{layer}.input_layernorm.weight"));
            let x = fast::rms_norm(&residual, Some(&norm), model.config.rms_norm_eps).unwrap();
            let got = expect_ok(
                attention_layer(&model, layer).forward(&x, Offset::Start(0), Mask::Causal),
                "Attention::forward",
            );
            let expected = model
                .reference(&format!("seq{seq}.layer{layer}.attention_output"))
                .expand_dims(0)
                .unwrap();
            // PyTorch and MLX sum the float32 products of the projections in different orders;
            // where an output is a small difference of large terms that shows as ~2e-6 absolute.
            let tolerance = Tolerance {
                rtol: 1e-5,
                atol: 1e-5,
            };
            let what = format!(
                "{} attention of layer {layer}, sequence {seq} ({} tokens)",
                model.name,
                x.shape()[1]
            );
            assert_allclose(&got, &expected, tolerance, &what);
        }
    }
}

#[test]
fn task_3_attention_layer_matches_hf_llama() {
    check_against_hf(TINY_MODELS[0]);
}

#[rstest]
#[case::qwen2_biases(config(32, 4, 2, 8), true, false, Offset::Start(3))]
#[case::qwen3_norms(config(32, 4, 2, 16), false, true, Offset::Start(3))]
#[case::qwen3_norms_per_row(config(32, 4, 2, 16), false, true, Offset::PerRow(&[5, 0]))]
fn task_4_qwen_attention_layer_matches_mlx_fused_ops(
    #[case] config: AttentionConfig,
    #[case] qwen2: bool,
    #[case] qwen3: bool,
    #[case] offset: Offset,
) {
    check_random_layer(config, qwen2, qwen3, 4, offset);
}

#[rstest]
#[case::qwen2_biases(TINY_MODELS[1])]
#[case::qwen3_norms(TINY_MODELS[2])]
fn task_4_qwen_attention_layer_matches_hf(#[case] model: &str) {
    check_against_hf(model);
}
