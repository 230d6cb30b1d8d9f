//! Chapter 1 tests. Run them with `cargo xtask test attention` (add `--task N` for one task).
//! Expected values come from MLX's own ops and fused kernels, and from PyTorch (task 4).

use attention::{linear, scaled_dot_product_attention_simple, softmax, SimpleMultiHeadAttention};
use mlx_rs::{fast, ops, Array, Dtype};
use rstest::rstest;
use test_support::{assert_allclose, expect_ok, load_fixture, random_array, Tolerance};

#[rstest]
#[case::vector(&[7], 0, Dtype::Float32)]
#[case::matrix_last_axis(&[3, 5], -1, Dtype::Float32)]
#[case::matrix_first_axis(&[3, 5], 0, Dtype::Float32)]
#[case::batch_middle_axis(&[2, 3, 4], 1, Dtype::Float32)]
#[case::float16(&[4, 9], -1, Dtype::Float16)]
#[case::bfloat16(&[4, 9], -1, Dtype::Bfloat16)]
fn task_1_softmax_matches_mlx_softmax(
    #[case] shape: &[i32],
    #[case] axis: i32,
    #[case] dtype: Dtype,
) {
    let x = random_array(shape, dtype, 1);
    let got = expect_ok(softmax(&x, axis), "softmax");
    assert_eq!(got.dtype(), dtype, "softmax must keep the input dtype");
    let expected = ops::softmax_axis(&x, axis, true).unwrap();
    assert_allclose(
        &got,
        &expected,
        Tolerance::for_dtype(dtype),
        &format!("softmax of {shape:?} along axis {axis}"),
    );
}

#[test]
fn task_1_softmax_survives_large_inputs() {
    // exp(1000) overflows f32: only a softmax that subtracts the maximum stays finite.
    let x = random_array(&[2, 6], Dtype::Float32, 2)
        .multiply(Array::from_f32(1000.0))
        .unwrap();
    let got = expect_ok(softmax(&x, -1), "softmax");
    let expected = ops::softmax_axis(&x, -1, true).unwrap();
    assert_allclose(
        &got,
        &expected,
        Tolerance::F32,
        "softmax of inputs around ±1000",
    );
}

/// `x W^T + b` through MLX's fused addmm, on x flattened to two dimensions.
fn linear_expected(x: &Array, w: &Array, bias: Option<&Array>) -> Array {
    let out_features = w.shape()[0];
    let rows = x.reshape(&[-1, *x.shape().last().unwrap()]).unwrap();
    let zero = Array::zeros::<f32>(&[out_features])
        .unwrap()
        .as_dtype(x.dtype())
        .unwrap();
    let y = ops::addmm(bias.unwrap_or(&zero), &rows, w.t(), 1.0, 1.0).unwrap();
    let mut shape = x.shape().to_vec();
    *shape.last_mut().unwrap() = out_features;
    y.reshape(&shape).unwrap()
}

#[rstest]
#[case::no_bias(&[4, 8], 6, false, Dtype::Float32)]
#[case::with_bias(&[4, 8], 6, true, Dtype::Float32)]
#[case::batched_with_bias(&[2, 3, 8], 5, true, Dtype::Float32)]
#[case::single_token(&[1, 16], 16, true, Dtype::Float32)]
#[case::float16(&[3, 32], 8, true, Dtype::Float16)]
fn task_2_linear_matches_mlx_addmm(
    #[case] x_shape: &[i32],
    #[case] out_features: i32,
    #[case] with_bias: bool,
    #[case] dtype: Dtype,
) {
    let in_features = *x_shape.last().unwrap();
    let x = random_array(x_shape, dtype, 3);
    let w = random_array(&[out_features, in_features], dtype, 4);
    let bias = with_bias.then(|| random_array(&[out_features], dtype, 5));
    let got = expect_ok(linear(&x, &w, bias.as_ref()), "linear");
    let expected = linear_expected(&x, &w, bias.as_ref());
    assert_allclose(
        &got,
        &expected,
        Tolerance::for_dtype(dtype),
        &format!("linear of {x_shape:?} to {out_features} features"),
    );
}

#[derive(Clone, Copy, Debug)]
enum Mask {
    None,
    Causal,
    Random,
}

/// An additive `[L, S]` mask: 0 where a query may look, -inf where it may not.
fn mask_array(kind: Mask, queries: i32, keys: i32, dtype: Dtype) -> Option<Array> {
    let values: Vec<f32> = match kind {
        Mask::None => return None,
        // The last query sees every key; earlier ones see keys up to their own position.
        Mask::Causal => (0..queries)
            .flat_map(|i| {
                (0..keys).map(move |j| {
                    if j <= i + keys - queries {
                        0.0
                    } else {
                        f32::NEG_INFINITY
                    }
                })
            })
            .collect(),
        Mask::Random => {
            let noise = random_array(&[queries, keys], Dtype::Float32, 6);
            noise.eval().unwrap();
            noise.as_slice::<f32>().to_vec()
        }
    };
    Some(
        Array::from_slice(&values, &[queries, keys])
            .as_dtype(dtype)
            .unwrap(),
    )
}

/// MLX's fused attention, which wants exactly `[B, H, L, D]`.
fn attention_expected(q: &Array, k: &Array, v: &Array, scale: f32, mask: Option<&Array>) -> Array {
    let to_4d = |x: &Array| {
        let shape = x.shape();
        let (tail, lead) = (&shape[shape.len() - 2..], &shape[..shape.len() - 2]);
        let heads = lead.last().copied().unwrap_or(1);
        x.reshape(&[-1, heads, tail[0], tail[1]]).unwrap()
    };
    let out = match mask {
        Some(mask) => {
            fast::scaled_dot_product_attention(to_4d(q), to_4d(k), to_4d(v), scale, mask, None)
        }
        None => fast::scaled_dot_product_attention(to_4d(q), to_4d(k), to_4d(v), scale, None, None),
    };
    out.unwrap().reshape(q.shape()).unwrap()
}

#[rstest]
#[case::square(&[1, 2], 5, 5, 8, None, Mask::None, Dtype::Float32)]
#[case::more_keys_than_queries(&[2, 4], 3, 7, 16, Some(0.5), Mask::None, Dtype::Float32)]
#[case::causal(&[2, 4], 6, 6, 16, None, Mask::Causal, Dtype::Float32)]
#[case::causal_with_a_prefix(&[1, 2], 3, 8, 16, None, Mask::Causal, Dtype::Float32)]
#[case::one_leading_dim_random_mask(&[3], 4, 9, 32, None, Mask::Random, Dtype::Float32)]
#[case::float16_causal(&[2, 2], 5, 5, 8, None, Mask::Causal, Dtype::Float16)]
#[case::bfloat16(&[1, 3], 4, 4, 16, Some(0.25), Mask::None, Dtype::Bfloat16)]
fn task_3_attention_matches_mlx_fast_attention(
    #[case] lead: &[i32],
    #[case] queries: i32,
    #[case] keys: i32,
    #[case] depth: i32,
    #[case] scale: Option<f32>,
    #[case] mask: Mask,
    #[case] dtype: Dtype,
) {
    let shape = |tokens: i32| [lead, &[tokens, depth]].concat();
    let q = random_array(&shape(queries), dtype, 7);
    let k = random_array(&shape(keys), dtype, 8);
    let v = random_array(&shape(keys), dtype, 9);
    let mask_values = mask_array(mask, queries, keys, dtype);
    let got = expect_ok(
        scaled_dot_product_attention_simple(&q, &k, &v, scale, mask_values.as_ref()),
        "scaled_dot_product_attention_simple",
    );
    let default_scale = 1.0 / (depth as f32).sqrt();
    let expected = attention_expected(
        &q,
        &k,
        &v,
        scale.unwrap_or(default_scale),
        mask_values.as_ref(),
    );
    let what = format!("attention ({:?} queries {queries}, keys {keys}, depth {depth}, scale {scale:?}, mask {mask:?})", lead);
    assert_allclose(&got, &expected, Tolerance::for_dtype(dtype), &what);
}

/// PyTorch's `nn.MultiheadAttention` with the same weights (models/fixtures/attention/).
#[rstest]
#[case::self_attention(4, "self_no_mask")]
#[case::self_attention_causal(4, "self_causal")]
#[case::cross_attention(8, "cross_no_mask")]
#[case::self_attention_random_mask(2, "self_random_mask")]
fn task_4_multi_head_attention_matches_pytorch(#[case] num_heads: i32, #[case] case: &str) {
    let reference = load_fixture("attention/multi_head_attention.safetensors");
    let tensor = |name: &str| reference.get(&format!("{case}.{name}")).cloned();
    let weight = |name: &str| tensor(name).unwrap_or_else(|| panic!("fixture lacks {case}.{name}"));
    let hidden = weight("wq").shape()[0];
    let attention = expect_ok(
        SimpleMultiHeadAttention::new(
            hidden,
            num_heads,
            weight("wq"),
            weight("wk"),
            weight("wv"),
            weight("wo"),
        ),
        "SimpleMultiHeadAttention::new",
    );
    let got = expect_ok(
        attention.forward(
            &weight("query"),
            &weight("key"),
            &weight("value"),
            tensor("mask").as_ref(),
        ),
        "forward",
    );
    // Two float32 implementations that sum in different orders.
    let tolerance = Tolerance {
        rtol: 1e-5,
        atol: 1e-5,
    };
    assert_allclose(
        &got,
        &weight("output"),
        tolerance,
        &format!("multi-head attention ({case}, {num_heads} heads)"),
    );
}

#[test]
fn task_4_multi_head_attention_rejects_misshapen_weights() {
    let w = random_array(&[8, 8], Dtype::Float32, 10);
    let wrong = random_array(&[8, 4], Dtype::Float32, 11);
    let result = SimpleMultiHeadAttention::new(8, 2, w.clone(), w.clone(), wrong, w.clone());
    let error = result
        .err()
        .expect("a [8, 4] wv must be rejected")
        .to_string();
    assert!(
        error.contains("wv"),
        "the error should name the bad weight: {error}"
    );
    assert!(
        SimpleMultiHeadAttention::new(8, 3, w.clone(), w.clone(), w.clone(), w).is_err(),
        "8 features cannot split into 3 heads"
    );
}
