//! Task 1: dequantize

use crate::harness::{mlx_quantize, DEQUANTIZED, SMOLLM2, SMOLLM2_4BIT};
use mlx_rs::{ops, Array, Dtype};
use quantized_matmul::dequantize;
use rstest::rstest;
use test_support::{
    assert_allclose, expect_ok as ok, expect_ok, fetched_model_dir, random_array, Tolerance,
};

/// Small integers times a scale plus a bias, when each product and sum is exact in float32.
const EXACT: Tolerance = Tolerance {
    rtol: 0.0,
    atol: 0.0,
};

fn reshape(array: &Array, shape: &[i32]) -> Array {
    expect_ok(array.reshape(shape), "reshape")
}

/// `shape` is the float weight's `[..., K]`; MLX quantizes matrices, so leading axes are folded
/// into rows to quantize and unfolded again after.
#[rstest]
#[case::one_row(&[1, 128])]
#[case::matrix(&[48, 256])]
#[case::three_axes(&[2, 8, 384])]
fn task_1_dequantize_matches_mlx(
    #[values(4, 8)] bits: i32,
    #[values(32, 64, 128)] group_size: i32,
    #[case] shape: &[i32],
) {
    let k = shape[shape.len() - 1];
    let rows = shape.iter().product::<i32>() / k;
    let w = random_array(&[rows, k], Dtype::Float32, 11);
    let (packed, scales, biases) = mlx_quantize(&w, group_size, bits);
    let leading = &shape[..shape.len() - 1];
    let unfold = |array: &Array| {
        let last = array.shape()[1];
        reshape(array, &[leading, &[last]].concat())
    };
    let (packed, scales, biases) = (unfold(&packed), unfold(&scales), unfold(&biases));
    let expected = expect_ok(
        ops::dequantize(&packed, &scales, &biases, group_size, bits),
        "ops::dequantize",
    );
    let got = expect_ok(
        dequantize(&packed, &scales, &biases, group_size, bits),
        "dequantize",
    );
    assert_eq!(
        got.dtype(),
        Dtype::Float32,
        "float32 scales give float32 weights"
    );
    assert_allclose(
        &got,
        &expected,
        DEQUANTIZED,
        &format!(
            "dequantize ({bits} bits, groups of {group_size}, shape {shape:?}) vs ops::dequantize"
        ),
    );
}

#[rstest]
#[case::float16(Dtype::Float16)]
#[case::bfloat16(Dtype::Bfloat16)]
fn task_1_dequantize_returns_the_dtype_of_the_scales(#[case] dtype: Dtype) {
    let w = random_array(&[16, 128], dtype, 12);
    let (packed, scales, biases) = mlx_quantize(&w, 64, 4);
    assert_eq!(
        scales.dtype(),
        dtype,
        "MLX keeps scales in the weight's dtype"
    );
    let got = expect_ok(dequantize(&packed, &scales, &biases, 64, 4), "dequantize");
    assert_eq!(
        got.dtype(),
        dtype,
        "dequantize must return the dtype of the scales"
    );
    let expected = expect_ok(
        ops::dequantize(&packed, &scales, &biases, 64, 4),
        "ops::dequantize",
    );
    assert_allclose(
        &got,
        &expected,
        Tolerance::for_dtype(dtype),
        &format!("dequantize in {dtype:?} vs ops::dequantize"),
    );
}

/// One word, one group: the values 0, 1, 2, ... sit in the word lowest bits first, and come out
/// as `scale * q + bias` with scale 2 and bias -1.
#[rstest]
#[case::four_bits(4, 0x7654_3210, &[0, 1, 2, 3, 4, 5, 6, 7])]
#[case::eight_bits(8, 0x0302_0100, &[0, 1, 2, 3])]
#[case::high_values(4, 0xf0e1_d2c3, &[3, 12, 2, 13, 1, 14, 0, 15])]
fn task_1_dequantize_reads_the_lowest_bits_first(
    #[case] bits: i32,
    #[case] word: u32,
    #[case] q: &[i32],
) {
    let group_size = 32 / bits;
    let packed = Array::from_slice(&[word], &[1, 1]);
    let scales = Array::from_slice(&[2.0f32], &[1, 1]);
    let biases = Array::from_slice(&[-1.0f32], &[1, 1]);
    let got = expect_ok(
        dequantize(&packed, &scales, &biases, group_size, bits),
        "dequantize",
    );
    let expected: Vec<f32> = q.iter().map(|&q| 2.0 * q as f32 - 1.0).collect();
    let expected = Array::from_slice(&expected, &[1, group_size]);
    assert_allclose(
        &got,
        &expected,
        EXACT,
        &format!(
            "the {} values of {word:#010x} ({bits} bits each)",
            32 / bits
        ),
    );
}

#[rstest]
#[case::three_bits(3, 32, &[4, 3], &[4, 4])]
#[case::sixteen_bits(16, 32, &[4, 16], &[4, 4])]
#[case::scales_of_another_row_count(4, 32, &[5, 1], &[4, 2])]
#[case::too_few_groups(4, 32, &[4, 1], &[4, 2])]
#[case::group_size_not_dividing_the_row(4, 48, &[4, 1], &[4, 2])]
fn task_1_dequantize_rejects_what_does_not_fit(
    #[case] bits: i32,
    #[case] group_size: i32,
    #[case] scales_shape: &[i32],
    #[case] biases_shape: &[i32],
) {
    // [4, 8] words: 64 values per row at 4 bits.
    let packed = Array::zeros::<u32>(&[4, 8]).unwrap();
    let scales = Array::ones::<f32>(scales_shape).unwrap();
    let biases = Array::zeros::<f32>(biases_shape).unwrap();
    assert!(
        dequantize(&packed, &scales, &biases, group_size, bits).is_err(),
        "dequantize must return an Err for packed [4, 8] uint32 with {bits} bits, groups of {group_size}, scales {scales_shape:?} and biases {biases_shape:?}"
    );
}

#[test]
fn task_1_dequantize_rejects_a_float_weight() {
    let float = Array::zeros::<f32>(&[4, 8]).unwrap();
    let groups = Array::ones::<f32>(&[4, 2]).unwrap();
    assert!(
        dequantize(&float, &groups, &groups, 32, 4).is_err(),
        "a packed weight is uint32: a float32 one must be an Err"
    );
}

/// `cargo xtask models fetch` repacks the same GGUF (Q4_1 linears, Q8_0 embedding) into MLX's
/// layout without loss, and dequantizes it to the float32 model: unpacking every quantized
/// tensor must give that float32 tensor bit for bit. The float16 scales and biases are cast to
/// float32 first, as the loader of task 4 does: each product and sum is then exact.
#[test]
fn task_1_smollm2_4bit_dequantizes_exactly_to_the_float_model() {
    let (Some(float_dir), Some(quantized_dir)) =
        (fetched_model_dir(SMOLLM2), fetched_model_dir(SMOLLM2_4BIT))
    else {
        return;
    };
    let config: serde_json::Value = ok(
        serde_json::from_str(&ok(
            std::fs::read_to_string(quantized_dir.join("config.json")),
            "reading config.json",
        )),
        "parsing config.json",
    );
    let quantization = &config["quantization"];
    let float = ok(
        Array::load_safetensors(float_dir.join("model.safetensors")),
        "loading the float32 model",
    );
    let quantized = ok(
        Array::load_safetensors(quantized_dir.join("model.safetensors")),
        "loading the 4-bit model",
    );
    let as_f32 = |array: &Array| expect_ok(array.as_dtype(Dtype::Float32), "as_dtype");
    let mut checked = 0;
    let mut names: Vec<&String> = quantized
        .keys()
        .filter(|name| name.ends_with(".scales"))
        .collect();
    names.sort();
    for scales_name in names {
        let layer = scales_name.trim_end_matches(".scales");
        // A per-layer entry (the 8-bit embedding), else the model-wide setting.
        let settings = quantization.get(layer).unwrap_or(quantization);
        let (bits, group_size) = (
            settings["bits"].as_i64().unwrap() as i32,
            settings["group_size"].as_i64().unwrap() as i32,
        );
        let weight = format!("{layer}.weight");
        let got = expect_ok(
            dequantize(
                &quantized[&weight],
                &as_f32(&quantized[scales_name]),
                &as_f32(&quantized[&format!("{layer}.biases")]),
                group_size,
                bits,
            ),
            &format!("dequantize({weight})"),
        );
        assert_allclose(
            &got,
            &float[&weight],
            EXACT,
            &format!("{weight} ({bits} bits, groups of {group_size}) dequantized"),
        );
        checked += 1;
    }
    // 30 layers x 7 linear weights, plus the 8-bit embedding.
    assert_eq!(checked, 30 * 7 + 1, "quantized tensors in {SMOLLM2_4BIT}");
}
