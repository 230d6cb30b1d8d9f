//! Chapter 2 tests. Run them with `cargo xtask test rope` (add `--task N` for one task).
//! Expected values come from MLX's fused `fast::rope` and from HF transformers (the tiny models'
//! reference tensors in models/fixtures/).

use mlx_rs::{fast, ops, Array, Dtype};
use rope::{Offset, RoPE};
use rstest::rstest;
use test_support::{
    assert_allclose, expect_ok, load_tiny_model, random_array, Tolerance, TINY_MODELS,
};

/// MLX's fused RoPE. It reads positions from axis -2, so it wants `[B, H, L, D]`.
fn fused_rope(x: &Array, traditional: bool, base: f32, offset: i32) -> Array {
    let dims = *x.shape().last().unwrap();
    let heads_first = x.swap_axes(1, 2).unwrap(); // [B, H, L, D]
    fast::rope(heads_first, dims, traditional, base, 1.0, offset, None)
        .unwrap()
        .swap_axes(1, 2) // [B, L, H, D]
        .unwrap()
}

/// Any correct way of computing the frequencies `base^(-2i/D)` (`powf`, or `exp` and `ln` as MLX
/// does) agrees with MLX's to about the last bit; the angle `position x frequency` multiplies that
/// difference by the position (up to 40 here), hence an absolute tolerance above float32's 1e-6.
fn tolerance(dtype: Dtype) -> Tolerance {
    match dtype {
        Dtype::Float32 => Tolerance {
            rtol: 1e-5,
            atol: 1e-5,
        },
        _ => Tolerance::for_dtype(dtype),
    }
}

fn layout(traditional: bool) -> &'static str {
    if traditional {
        "interleaved"
    } else {
        "rotate-half"
    }
}

/// One case of the tables below: `x` is `[batch, length, heads, dims]`.
fn check_against_fused(
    traditional: bool,
    [batch, length, heads, dims]: [i32; 4],
    base: f32,
    offset: i32,
    dtype: Dtype,
) {
    let x = random_array(&[batch, length, heads, dims], dtype, 21);
    let rope = RoPE::new(dims, base, traditional);
    let got = expect_ok(rope.apply(&x, Offset::Start(offset)), "RoPE::apply");
    assert_eq!(got.dtype(), dtype, "RoPE must keep the input dtype");
    let expected = fused_rope(&x, traditional, base, offset);
    let what = format!(
        "rope ({}, x {:?}, base {base}, offset {offset})",
        layout(traditional),
        x.shape()
    );
    assert_allclose(&got, &expected, tolerance(dtype), &what);
}

#[rstest]
#[case::one_token([1, 1, 2, 8], 10000.0, 0, Dtype::Float32)]
#[case::prompt([2, 5, 3, 16], 10000.0, 0, Dtype::Float32)]
#[case::with_offset_7([2, 6, 4, 16], 10000.0, 7, Dtype::Float32)]
#[case::long_prompt_wide_heads([1, 33, 2, 64], 100000.0, 0, Dtype::Float32)]
#[case::one_token_at_position_40([3, 1, 2, 32], 1000000.0, 40, Dtype::Float32)]
#[case::float16_with_offset([2, 9, 4, 32], 10000.0, 7, Dtype::Float16)]
#[case::bfloat16([1, 4, 2, 16], 10000.0, 3, Dtype::Bfloat16)]
fn task_1_interleaved_rope_matches_mlx_fast_rope(
    #[case] shape: [i32; 4],
    #[case] base: f32,
    #[case] offset: i32,
    #[case] dtype: Dtype,
) {
    check_against_fused(true, shape, base, offset, dtype);
}

#[test]
fn task_1_rope_rejects_misshapen_input() {
    let rope = RoPE::new(16, 10000.0, true);
    let narrow = random_array(&[1, 4, 2, 8], Dtype::Float32, 22);
    let error = rope
        .apply(&narrow, Offset::Start(0))
        .expect_err("RoPE for 16 features must reject x with 8 features per head")
        .to_string();
    assert!(
        error.contains("16") && error.contains('8'),
        "the error should name both sizes: {error}"
    );
    let three_dims = random_array(&[4, 2, 16], Dtype::Float32, 23);
    assert!(
        rope.apply(&three_dims, Offset::Start(0)).is_err(),
        "x must be [B, L, H, D]; a [4, 2, 16] array must be rejected"
    );
}

#[rstest]
#[case::one_token([1, 1, 2, 8], 10000.0, 0, Dtype::Float32)]
#[case::prompt([2, 5, 3, 16], 10000.0, 0, Dtype::Float32)]
#[case::with_offset_7([2, 6, 4, 16], 10000.0, 7, Dtype::Float32)]
#[case::long_prompt_wide_heads([1, 33, 2, 64], 100000.0, 0, Dtype::Float32)]
#[case::one_token_at_position_40([3, 1, 2, 32], 1000000.0, 40, Dtype::Float32)]
#[case::float16_with_offset([2, 9, 4, 32], 10000.0, 7, Dtype::Float16)]
#[case::bfloat16([1, 4, 2, 16], 10000.0, 3, Dtype::Bfloat16)]
fn task_2_rotate_half_rope_matches_mlx_fast_rope(
    #[case] shape: [i32; 4],
    #[case] base: f32,
    #[case] offset: i32,
    #[case] dtype: Dtype,
) {
    check_against_fused(false, shape, base, offset, dtype);
}

/// HF transformers' `apply_rotary_pos_emb` on layer 0's queries and keys of the 16-token
/// sequence (after the projections, and for Qwen3 after q_norm/k_norm).
#[rstest]
#[case::llama(TINY_MODELS[0])]
#[case::qwen2(TINY_MODELS[1])]
#[case::qwen3(TINY_MODELS[2])]
fn task_2_rotate_half_rope_matches_hf_transformers(#[case] model: &str) {
    let model = load_tiny_model(model);
    let rope = RoPE::new(model.config.head_dim, model.config.rope_theta, false);
    for name in ["q", "k"] {
        let before = model.reference(&format!("seq2.layer0.{name}")); // [H, L, D]
        let x = before.expand_dims(0).unwrap().swap_axes(1, 2).unwrap(); // [1, L, H, D]
        let got = expect_ok(rope.apply(&x, Offset::Start(0)), "RoPE::apply");
        let got = got.swap_axes(1, 2).unwrap().squeeze_axes(&[0]).unwrap(); // [H, L, D]
        assert_allclose(
            &got,
            &model.reference(&format!("seq2.layer0.{name}_rope")),
            tolerance(Dtype::Float32),
            &format!("rope of {}'s layer-0 {name} (16 tokens)", model.name),
        );
    }
}

/// Reorders each head's features the way llama.cpp's converter reorders q_proj/k_proj rows:
/// HF feature `a * D/2 + i` (a = 0, 1) goes to position `2i + a`, so HF's rotate-half pairs
/// become neighbours.
fn to_llama_cpp_order(x: &Array) -> Array {
    let shape = x.shape().to_vec();
    let dims = shape[3];
    x.reshape(&[shape[0], shape[1], shape[2], 2, dims / 2]) // [B, L, H, 2, D/2]
        .unwrap()
        .swap_axes(3, 4) // [B, L, H, D/2, 2]
        .unwrap()
        .reshape(&shape)
        .unwrap()
}

/// Why the GGUF weights were un-permuted: interleaved RoPE on llama.cpp's feature order is
/// rotate-half RoPE on HF's order, features reordered.
#[rstest]
#[case::smollm2_shapes([1, 7, 9, 64], 100000.0, 0)]
#[case::with_offset([2, 3, 3, 16], 10000.0, 5)]
fn task_2_rotate_half_is_interleaved_on_llama_cpp_order(
    #[case] shape: [i32; 4],
    #[case] base: f32,
    #[case] offset: i32,
) {
    let x = random_array(&shape, Dtype::Float32, 24);
    let rope = RoPE::new(shape[3], base, false);
    let got = expect_ok(rope.apply(&x, Offset::Start(offset)), "RoPE::apply");
    let expected = fused_rope(&to_llama_cpp_order(&x), true, base, offset);
    assert_allclose(
        &to_llama_cpp_order(&got),
        &expected,
        tolerance(Dtype::Float32),
        "rotate-half rope, reordered, against interleaved rope of the reordered input",
    );
}

#[rstest]
#[case::rotate_half(false, &[0, 5, 12], 4, Dtype::Float32)]
#[case::interleaved(true, &[3, 0], 6, Dtype::Float32)]
#[case::one_token_per_row(false, &[17, 2, 9, 30], 1, Dtype::Float32)]
#[case::same_offsets(false, &[7, 7], 3, Dtype::Float32)]
#[case::float16(false, &[4, 11, 0], 5, Dtype::Float16)]
fn task_3_per_row_offsets_match_mlx_fast_rope_row_by_row(
    #[case] traditional: bool,
    #[case] starts: &[i32],
    #[case] length: i32,
    #[case] dtype: Dtype,
) {
    let (batch, heads, dims, base) = (starts.len() as i32, 3, 16, 10000.0);
    let x = random_array(&[batch, length, heads, dims], dtype, 25);
    let rope = RoPE::new(dims, base, traditional);
    let got = expect_ok(rope.apply(&x, Offset::PerRow(starts)), "RoPE::apply");
    let rows = x.split_equal(batch, 0).unwrap(); // B x [1, L, H, D]
    let expected_rows: Vec<Array> = rows
        .iter()
        .zip(starts)
        .map(|(row, &start)| fused_rope(row, traditional, base, start))
        .collect();
    let expected = ops::concatenate(&expected_rows, 0).unwrap();
    let what = format!(
        "rope ({}, per-row offsets {starts:?}, {length} tokens)",
        layout(traditional)
    );
    assert_allclose(&got, &expected, tolerance(dtype), &what);
}

#[test]
fn task_3_per_row_offsets_need_one_offset_per_row() {
    let rope = RoPE::new(8, 10000.0, false);
    let x = random_array(&[3, 2, 1, 8], Dtype::Float32, 26);
    let error = rope
        .apply(&x, Offset::PerRow(&[0, 4]))
        .expect_err("2 offsets for 3 rows must be rejected")
        .to_string();
    assert!(
        error.contains('2') && error.contains('3'),
        "the error should say how many offsets and rows there are: {error}"
    );
}
