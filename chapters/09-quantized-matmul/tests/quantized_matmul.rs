//! Chapter 9 tests. Run them with `cargo xtask test quantized-matmul` (add `--task N` for one
//! task). Dequantizing and multiplying are compared with MLX's own `dequantize` and
//! `quantized_matmul`; models with HF transformers' references (models/fixtures/) and with the
//! float32 conversion of the same GGUF, never with our own output.

use mlx_rs::{ops, ops::indexing::IndexOp, Array, Dtype};
use quantized_matmul::{
    dequantize, generate, greedy, load_model, quantized_matmul, weight_bytes, CachedModel,
    GenerationOptions, Kernel, Linear, LoadError, Model, Quantization, QuantizedLinear, Tokenizer,
};
use rstest::rstest;
use std::{collections::HashMap, path::Path};
use test_support::{
    assert_allclose, expect_ok as ok, expect_ok, fetched_model_dir, fixture_path, load_fixture,
    random_array, token_ids as ids, Tolerance,
};

const SMOLLM2: &str = "smollm2-135m-instruct";
const SMOLLM2_4BIT: &str = "smollm2-135m-instruct-4bit";

/// Small integers times a scale plus a bias, when each product and sum is exact in float32.
const EXACT: Tolerance = Tolerance {
    rtol: 0.0,
    atol: 0.0,
};

/// Unpacking is exact; `scale * q + bias` of random scales is two float32 roundings on MLX's CPU,
/// but one on its CUDA backend, whose kernel fuses them into a multiply-add: the last bit may
/// differ (measured on an H200: 0.67909193 vs 0.67909205). One quantization level is ~0.1, so
/// this still catches a wrong level, scale or bias.
const DEQUANTIZED: Tolerance = Tolerance {
    rtol: 1e-6,
    atol: 1e-6,
};

/// Sums of `K` <= 384 products of N(0, 1) inputs and weights, in another order than MLX's fused
/// kernel: outputs up to ~70 differ by float32 roundings of the partial sums (measured: at most
/// 5e-5). An output that cancels to near zero keeps the absolute rounding of its partial sums, so
/// the bound is 1e-5 relative plus 1e-4 absolute: a weight off by one quantization step moves an
/// output by ~0.1.
const MATMUL: Tolerance = Tolerance {
    rtol: 1e-5,
    atol: 1e-4,
};

/// MLX's quantization of a float matrix `[R, C]`: packed `[R, C * bits / 32]`, scales and biases
/// `[R, C / group_size]`.
fn mlx_quantize(w: &Array, group_size: i32, bits: i32) -> (Array, Array, Array) {
    expect_ok(ops::quantize(w, group_size, bits), "ops::quantize")
}

fn reshape(array: &Array, shape: &[i32]) -> Array {
    expect_ok(array.reshape(shape), "reshape")
}

// ---------------------------------------------------------------------------------------------
// Task 1: dequantize

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

// ---------------------------------------------------------------------------------------------
// Task 2: quantized_matmul

/// `transpose`: W is `[N, K]` (a linear layer's weight) and the product is `x W^T`; otherwise
/// W is `[K, N]`, quantized in groups along `N`, and the product is `x W`.
#[rstest]
#[case::one_row(&[1, 256], 64, true)]
#[case::a_batch_of_sequences(&[2, 5, 384], 96, true)]
#[case::not_transposed(&[7, 128], 256, false)]
#[case::a_batch_not_transposed(&[2, 3, 256], 128, false)]
fn task_2_quantized_matmul_matches_mlx(
    #[values(4, 8)] bits: i32,
    #[values(32, 64, 128)] group_size: i32,
    #[case] x_shape: &[i32],
    #[case] n: i32,
    #[case] transpose: bool,
) {
    let k = x_shape[x_shape.len() - 1];
    let x = random_array(x_shape, Dtype::Float32, 21);
    let w_shape = if transpose { [n, k] } else { [k, n] };
    let w = random_array(&w_shape, Dtype::Float32, 22);
    let (packed, scales, biases) = mlx_quantize(&w, group_size, bits);
    let expected = expect_ok(
        ops::quantized_matmul(&x, &packed, &scales, &biases, transpose, group_size, bits),
        "ops::quantized_matmul",
    );
    let got = expect_ok(
        quantized_matmul(&x, &packed, &scales, &biases, group_size, bits, transpose),
        "quantized_matmul",
    );
    assert_allclose(
        &got,
        &expected,
        MATMUL,
        &format!("quantized_matmul (x {x_shape:?}, W {w_shape:?}, {bits} bits, groups of {group_size}, transpose {transpose}) vs ops::quantized_matmul"),
    );
}

#[rstest]
#[case::x_of_another_width(&[3, 96], 4)]
#[case::three_bits(&[3, 128], 3)]
fn task_2_quantized_matmul_rejects_what_does_not_fit(#[case] x_shape: &[i32], #[case] bits: i32) {
    let (packed, scales, biases) =
        mlx_quantize(&random_array(&[64, 128], Dtype::Float32, 23), 64, 4);
    let x = random_array(x_shape, Dtype::Float32, 24);
    assert!(
        quantized_matmul(&x, &packed, &scales, &biases, 64, bits, true).is_err(),
        "x {x_shape:?} times W [64, 128] packed in 4 bits, read as {bits} bits, must be an Err"
    );
}

// ---------------------------------------------------------------------------------------------
// Task 3: QuantizedLinear

const OUT: i32 = 96;
/// Two groups of 128 per row: MLX 0.32.2's CUDA `quantized_matmul` is wrong when a row is a
/// single group of 128 and `x` has several rows (platform/cuda/quantized_matmul_check.py), and a
/// reference must be right on every backend.
const IN: i32 = 256;

/// A float weight `[OUT, IN]` and, when asked, a bias `[OUT]`.
fn float_layer(with_bias: bool) -> (Array, Option<Array>) {
    let weight = random_array(&[OUT, IN], Dtype::Float32, 31);
    let bias = with_bias.then(|| random_array(&[OUT], Dtype::Float32, 32));
    (weight, bias)
}

fn course_layer(with_bias: bool, group_size: i32, bits: i32) -> QuantizedLinear {
    let (weight, bias) = float_layer(with_bias);
    expect_ok(
        QuantizedLinear::quantize(&weight, bias, group_size, bits, Kernel::Course),
        "QuantizedLinear::quantize",
    )
}

#[rstest]
fn task_3_forward_matches_mlx_quantized_matmul(
    #[values(4, 8)] bits: i32,
    #[values(32, 128)] group_size: i32,
    #[values(false, true)] with_bias: bool,
) {
    let layer = course_layer(with_bias, group_size, bits);
    let (weight, bias) = float_layer(with_bias);
    let (packed, scales, biases) = mlx_quantize(&weight, group_size, bits);
    let x = random_array(&[2, 3, IN], Dtype::Float32, 33);
    let mut expected = expect_ok(
        ops::quantized_matmul(&x, &packed, &scales, &biases, true, group_size, bits),
        "ops::quantized_matmul",
    ); // [2, 3, OUT]
    if let Some(bias) = &bias {
        expected = expect_ok(expected.add(bias), "add");
    }
    let got = expect_ok(layer.forward(&x), "QuantizedLinear::forward");
    assert_allclose(
        &got,
        &expected,
        MATMUL,
        &format!("QuantizedLinear::forward ({bits} bits, groups of {group_size}, bias {with_bias}) vs ops::quantized_matmul"),
    );
}

/// An embedding lookup: ids `[2, 3]` give rows `[2, 3, IN]`, repeats and all.
#[rstest]
fn task_3_rows_are_the_dequantized_rows(#[values(4, 8)] bits: i32) {
    let layer = course_layer(false, 64, bits);
    let (weight, _) = float_layer(false);
    let (packed, scales, biases) = mlx_quantize(&weight, 64, bits);
    let ids = Array::from_slice(&[3u32, 0, 95, 3, 7, 1], &[2, 3]);
    let whole = expect_ok(
        ops::dequantize(&packed, &scales, &biases, 64, bits),
        "ops::dequantize",
    );
    let expected = expect_ok(whole.take_axis(&ids, 0), "take_axis"); // [2, 3, IN]
    let got = expect_ok(layer.rows(&ids), "QuantizedLinear::rows");
    assert_allclose(
        &got,
        &expected,
        DEQUANTIZED,
        &format!("QuantizedLinear::rows of ids [[3, 0, 95], [3, 7, 1]] ({bits} bits)"),
    );
}

/// float32 scales and biases: `OUT * IN * bits / 8` bytes of packed weight, `2 * OUT * IN / G`
/// float32 scales and biases, and the bias.
#[rstest]
fn task_3_shape_and_nbytes_count_the_packed_weight(
    #[values(4, 8)] bits: i32,
    #[values(32, 64, 128)] group_size: i32,
    #[values(false, true)] with_bias: bool,
) {
    let layer = course_layer(with_bias, group_size, bits);
    assert_eq!(
        layer.shape(),
        (OUT, IN),
        "QuantizedLinear::shape is (out, in), unpacked"
    );
    let bytes =
        OUT * IN * bits / 8 + 2 * OUT * (IN / group_size) * 4 + if with_bias { OUT * 4 } else { 0 };
    assert_eq!(
        layer.nbytes(),
        bytes as usize,
        "QuantizedLinear::nbytes ({bits} bits, groups of {group_size}, bias {with_bias})"
    );
}

// ---------------------------------------------------------------------------------------------
// Task 4: loading

fn logits_of(model: &Model, tokens: &Array) -> Array {
    let mut cache = model.new_cache();
    expect_ok(
        model.forward(&tokens.expand_dims(0).unwrap(), &mut cache),
        "Model::forward",
    )
    .index(0) // [L, V]
}

/// `sqrt(mean((got - expected)^2)) / sqrt(mean(expected^2))`.
fn relative_rms_error(got: &Array, expected: &Array) -> f32 {
    let rms = |array: &Array| {
        expect_ok(
            array.square().and_then(|squares| squares.mean(None)),
            "mean of squares",
        )
        .item_cast::<f32>()
        .sqrt()
    };
    rms(&expect_ok(got.subtract(expected), "subtract")) / rms(expected)
}

/// 8-bit weights quantized as the tiny models load, against transformers' float32 logits.
/// Rounding a weight to one of 256 levels of its group moves it by up to a level, 0.4% of the
/// group's range, but these random models amplify it: their logits (RMS ~8) move by up to ~3
/// (measured: relative RMS error 0.013 to 0.051; 4 bits give 0.3 to 0.6, a wrong layout or scale
/// ~1). So the test bounds the relative RMS error at 0.1;
/// `task_4_quantizing_at_load_equals_mlx_quantization` checks the same models tightly.
#[rstest]
fn task_4_int8_at_load_matches_transformers(
    #[values("llama-tiny", "qwen2-tiny", "qwen3-tiny")] model_name: &str,
    #[values(32, 64)] group_size: i32,
) {
    let model = ok(
        load_model(
            &fixture_path(model_name),
            Quantization::Int8,
            group_size,
            Kernel::Course,
        ),
        "load_model",
    );
    let reference = load_fixture(&format!("{model_name}/reference.safetensors"));
    for sequence in [1, 2] {
        let got = logits_of(&model, &reference[&format!("seq{sequence}.tokens")]);
        let error = relative_rms_error(&got, &reference[&format!("seq{sequence}.logits")]);
        assert!(
            error < 0.1,
            "{model_name} quantized to 8 bits in groups of {group_size}: the logits of seq{sequence} differ from transformers' by {error} relative RMS (8-bit rounding gives at most ~0.05)"
        );
    }
}

/// A model directory: `config` as config.json, `tensors` as model.safetensors.
fn write_model(dir: &Path, config: &serde_json::Value, tensors: &HashMap<String, Array>) {
    ok(
        Array::save_safetensors(tensors, None, dir.join("model.safetensors")),
        "saving model.safetensors",
    );
    ok(
        std::fs::write(dir.join("config.json"), config.to_string()),
        "writing config.json",
    );
}

fn config_json(model_name: &str) -> serde_json::Value {
    let path = fixture_path(&format!("{model_name}/config.json"));
    ok(
        serde_json::from_str(&ok(std::fs::read_to_string(&path), "reading config.json")),
        "parsing config.json",
    )
}

fn float_weights(model_name: &str) -> HashMap<String, Array> {
    load_fixture(&format!("{model_name}/model.safetensors"))
}

/// The layers a loader makes linear: every matrix `{layer}.weight` (norms are vectors).
fn linear_layer(name: &str, tensor: &Array) -> Option<String> {
    let layer = name.strip_suffix(".weight")?;
    (tensor.ndim() == 2).then(|| layer.to_string())
}

/// The float model that quantizing at load stands for: every linear weight replaced by MLX's
/// `dequantize(quantize(W))`.
fn mlx_rounded_weights(model_name: &str, group_size: i32, bits: i32) -> HashMap<String, Array> {
    let mut weights = float_weights(model_name);
    for (name, tensor) in weights.iter_mut() {
        if linear_layer(name, tensor).is_some() {
            let (packed, scales, biases) = mlx_quantize(tensor, group_size, bits);
            *tensor = expect_ok(
                ops::dequantize(&packed, &scales, &biases, group_size, bits),
                "ops::dequantize",
            );
        }
    }
    weights
}

/// Through the same float32 model (chapter 8's, checked against transformers there), a model
/// quantized as it loads must give the logits of the float model whose weights are MLX's
/// quantized-then-dequantized ones. Only the order of the sums may differ: the reference
/// solution gives the same logits bit for bit, MLX's fused kernel (another order) differs by up
/// to 8e-5 on logits up to ~30. A weight off by one quantization step moves them by far more.
const ROUNDED_MODEL: Tolerance = Tolerance {
    rtol: 1e-4,
    atol: 2e-4,
};

#[rstest]
fn task_4_quantizing_at_load_equals_mlx_quantization(
    #[values("llama-tiny", "qwen2-tiny", "qwen3-tiny")] model_name: &str,
    #[values(Quantization::Int4, Quantization::Int8)] quantization: Quantization,
    #[values(32, 64)] group_size: i32,
) {
    let bits = quantization.bits().unwrap();
    let folder = tempfile::tempdir().unwrap();
    write_model(
        folder.path(),
        &config_json(model_name),
        &mlx_rounded_weights(model_name, group_size, bits),
    );
    let rounded = ok(Model::load(folder.path()), "Model::load");
    let model = ok(
        load_model(
            &fixture_path(model_name),
            quantization,
            group_size,
            Kernel::Course,
        ),
        "load_model",
    );
    let tokens = &load_fixture(&format!("{model_name}/reference.safetensors"))["seq2.tokens"];
    assert_allclose(
        &logits_of(&model, tokens),
        &logits_of(&rounded, tokens),
        ROUNDED_MODEL,
        &format!("{model_name} quantized to {bits} bits in groups of {group_size} as it loads vs the float model of MLX's rounded weights: logits of seq2"),
    );
}

/// Per weight: `bits / 8` bytes, and a float32 scale and bias per `G` weights (`8 / G` bytes),
/// against 4 bytes as float32: `in_memory / float32 = (bits * G + 64) / (32 * G)`, 3/16 for
/// 4 bits in groups of 32. llama-tiny has no biases.
#[rstest]
#[case::int4_groups_of_32(Quantization::Int4, 32)]
#[case::int4_groups_of_64(Quantization::Int4, 64)]
#[case::int8_groups_of_32(Quantization::Int8, 32)]
#[case::int8_groups_of_64(Quantization::Int8, 64)]
fn task_4_quantized_weights_take_bits_over_32_of_float32_plus_scales(
    #[case] quantization: Quantization,
    #[case] group_size: i32,
) {
    let dir = fixture_path("llama-tiny");
    let dense = ok(
        load_model(&dir, Quantization::None, group_size, Kernel::Course),
        "load_model",
    );
    let float32 = weight_bytes(&dense);
    assert_eq!(
        float32.in_memory, float32.float32,
        "Quantization::None keeps float32 weights"
    );
    let model = ok(
        load_model(&dir, quantization, group_size, Kernel::Course),
        "load_model",
    );
    let bytes = weight_bytes(&model);
    let bits = quantization.bits().unwrap() as usize;
    let g = group_size as usize;
    assert_eq!(
        bytes.in_memory * 32 * g,
        bytes.float32 * (bits * g + 64),
        "{quantization:?} in groups of {group_size}: {} bytes in memory for {} bytes of float32",
        bytes.in_memory,
        bytes.float32
    );
}

#[test]
fn task_4_a_group_size_that_does_not_divide_is_named() {
    let error = load_model(
        &fixture_path("llama-tiny"),
        Quantization::Int8,
        128,
        Kernel::Course,
    )
    .err()
    .expect("groups of 128 do not divide llama-tiny's 64 inputs: load_model must fail");
    assert!(
        matches!(error, LoadError::Quantization(_)),
        "expected LoadError::Quantization, got {error:?}"
    );
    let message = error.to_string();
    for named in ["model.embed_tokens", "64", "--quant-group-size"] {
        assert!(
            message.contains(named),
            "the error should mention {named}: {message}"
        );
    }
}

/// llama-tiny as an mlx-lm checkpoint: every linear weight quantized to 8 bits in groups of 64,
/// except the embedding (groups of 32: a per-layer entry in "quantization"), scales and biases
/// in float16. Returns it with the float32 model it stands for (dequantized by MLX after an
/// exact cast of the scales and biases to float32).
fn quantized_llama_tiny() -> (
    serde_json::Value,
    HashMap<String, Array>,
    HashMap<String, Array>,
) {
    let mut config = config_json("llama-tiny");
    config["quantization"] = serde_json::json!({
        "bits": 8,
        "group_size": 64,
        "model.embed_tokens": { "bits": 8, "group_size": 32 },
    });
    let mut quantized = HashMap::new();
    let mut dequantized = HashMap::new();
    for (name, tensor) in float_weights("llama-tiny") {
        let Some(layer) = linear_layer(&name, &tensor) else {
            quantized.insert(name.clone(), tensor.clone());
            dequantized.insert(name, tensor);
            continue;
        };
        let group_size = if layer == "model.embed_tokens" {
            32
        } else {
            64
        };
        let (packed, scales, biases) = mlx_quantize(&tensor, group_size, 8);
        let cast = |array: &Array, dtype| expect_ok(array.as_dtype(dtype), "as_dtype");
        let (scales, biases) = (cast(&scales, Dtype::Float16), cast(&biases, Dtype::Float16));
        dequantized.insert(
            name.clone(),
            expect_ok(
                ops::dequantize(
                    &packed,
                    cast(&scales, Dtype::Float32),
                    &cast(&biases, Dtype::Float32),
                    group_size,
                    8,
                ),
                "ops::dequantize",
            ),
        );
        quantized.insert(format!("{layer}.scales"), scales);
        quantized.insert(format!("{layer}.biases"), biases);
        quantized.insert(name, packed);
    }
    (config, quantized, dequantized)
}

#[test]
fn task_4_a_quantized_checkpoint_loads_as_stored() {
    let (config, quantized, dequantized) = quantized_llama_tiny();
    let folder = tempfile::tempdir().unwrap();
    write_model(folder.path(), &config, &quantized);
    let error = load_model(folder.path(), Quantization::Int4, 64, Kernel::Course)
        .err()
        .expect("quantizing an already quantized checkpoint must fail");
    assert!(
        error.to_string().contains("--quantization none"),
        "the error should say to pass --quantization none: {error}"
    );

    let model = ok(
        load_model(folder.path(), Quantization::None, 64, Kernel::Course),
        "load_model",
    );
    let embedding = model.linear_layers()[0];
    assert_eq!(
        embedding.shape(),
        (512, 64),
        "model.embed_tokens unpacks to [512, 64]"
    );
    let rows = expect_ok(embedding.rows(&Array::from_slice(&[5u32], &[1])), "rows");
    assert_eq!(
        rows.dtype(),
        Dtype::Float32,
        "stored float16 scales and biases must be cast to float32 as they load"
    );
    // 8 bits: 1 byte per weight, plus a float32 scale and bias per group: per 64 weights in the
    // layers, per 32 in the embedding.
    let bytes = weight_bytes(&model);
    let embedding_weights = 512 * 64;
    let layer_weights = bytes.float32 / 4 - embedding_weights;
    assert_eq!(
        bytes.in_memory,
        embedding_weights + embedding_weights / 4 + layer_weights + layer_weights / 8,
        "bytes of the quantized layers: is the embedding's own group size used?"
    );

    let float_folder = tempfile::tempdir().unwrap();
    write_model(
        float_folder.path(),
        &config_json("llama-tiny"),
        &dequantized,
    );
    let float = ok(Model::load(float_folder.path()), "Model::load");
    let tokens = &load_fixture("llama-tiny/reference.safetensors")["seq2.tokens"];
    assert_allclose(
        &logits_of(&model, tokens),
        &logits_of(&float, tokens),
        ROUNDED_MODEL,
        "llama-tiny stored in 8 bits vs the float model of its dequantized weights: logits of seq2",
    );
}

/// Greedy steps per prompt: each step of the course's kernel unpacks every weight of the model,
/// so the test keeps to the first tokens of each reference continuation.
const STEPS: usize = 8;

/// The 4-bit SmolLM2, run by your kernel, against transformers' greedy continuations of the
/// float32 model. Its weights dequantize exactly to that model's (task 1), so only the order of
/// the sums differs: the continuations must be the same, except at a near tie. Where they
/// diverge, the test runs the float32 model (chapter 8's `Model::load`) on the shared prefix and
/// accepts the divergence only if the two tokens' logits there are within 1e-3. `prompts.json`
/// records top-2 margins of at least 0.016 along every reference path, so none is expected (the
/// reference solution reproduces all 8 prompts x 32 tokens). The cases: the shortest prompt, the
/// one with the smallest margin (0.016), the longest (the chat template) and a non-Latin one.
#[rstest]
#[case::capital(0)]
#[case::story(1)]
#[case::chat(3)]
#[case::chinese(7)]
fn task_4_smollm2_4bit_continues_as_the_float_model(#[case] prompt: usize) {
    let (Some(float_dir), Some(dir)) =
        (fetched_model_dir(SMOLLM2), fetched_model_dir(SMOLLM2_4BIT))
    else {
        return;
    };
    let model = ok(
        load_model(&dir, Quantization::None, 64, Kernel::Course),
        "load_model",
    );
    let tokenizer = ok(Tokenizer::load(&dir), "Tokenizer::load");
    let reference = load_fixture("smollm2/reference.safetensors");
    let tokens = ids(&reference[&format!("prompt{prompt}.tokens")]);
    let expected = &ids(&reference[&format!("prompt{prompt}.greedy_continuation")])[..STEPS];
    let options = GenerationOptions {
        max_new_tokens: STEPS,
        stop_strings: Vec::new(),
        ignore_eos: true,
    };
    let generation = ok(
        generate(
            &mut CachedModel::new(&model),
            &tokenizer,
            &tokens,
            &options,
            &mut greedy,
            &mut |_| {},
        ),
        "generate",
    );
    let Some(step) = (0..STEPS).find(|&step| generation.tokens[step] != expected[step]) else {
        return;
    };
    let float = ok(Model::load(&float_dir), "Model::load (float32)");
    let sequence = [&tokens[..], &expected[..step]].concat();
    let logits = logits_of(
        &float,
        &Array::from_slice(&sequence, &[sequence.len() as i32]),
    )
    .index(-1); // [V]
    let logit = |token: u32| logits.index(token as i32).item_cast::<f32>();
    let (chosen, got) = (expected[step], generation.tokens[step]);
    let margin = (logit(chosen) - logit(got)).abs();
    assert!(
        margin < 1e-3,
        "SmolLM2 4-bit, prompt {prompt}: at step {step} your model chose token {got}, transformers' float model token {chosen}; the float model's logits for the two differ by {margin}, not a near tie (< 1e-3). Got {:?}, expected {expected:?}",
        generation.tokens
    );
}
