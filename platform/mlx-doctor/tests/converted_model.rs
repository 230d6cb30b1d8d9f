//! `cargo xtask models fetch` writes SmolLM2 twice: float32 (HF layout) and MLX's quantized
//! layout. Q4_1 and Q8_0 map onto MLX's affine quantization without loss, so dequantizing every
//! quantized tensor with MLX must give back the float32 tensor bit for bit.

use mlx_rs::{ops, Array, Dtype};
use std::collections::HashMap;
use test_support::fetched_model_dir;

#[test]
fn quantized_smollm2_dequantizes_exactly_to_the_float32_model() {
    let (Some(float_dir), Some(quantized_dir)) = (
        fetched_model_dir("smollm2-135m-instruct"),
        fetched_model_dir("smollm2-135m-instruct-4bit"),
    ) else {
        return;
    };
    let config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(quantized_dir.join("config.json")).unwrap())
            .unwrap();
    let quantization = &config["quantization"];
    let float: HashMap<String, Array> =
        Array::load_safetensors(float_dir.join("model.safetensors")).unwrap();
    let quantized = Array::load_safetensors(quantized_dir.join("model.safetensors")).unwrap();

    let mut checked = 0;
    for (name, expected) in &float {
        let module = name.trim_end_matches(".weight");
        let Some(scales) = quantized.get(&format!("{module}.scales")) else {
            assert!(
                quantized[name].eq_values(expected).unwrap(),
                "{name} is stored unquantized but differs"
            );
            continue;
        };
        // A per-module override (the 8-bit embedding), else the model-wide setting.
        let settings = quantization.get(module).unwrap_or(quantization);
        let (bits, group_size) = (
            settings["bits"].as_i64().unwrap() as i32,
            settings["group_size"].as_i64().unwrap() as i32,
        );
        // Scales and biases are stored as float16, exactly as in the GGUF; dequantizing in float32
        // keeps every product exact.
        let as_f32 = |array: &Array| array.as_dtype(Dtype::Float32).unwrap();
        let biases = as_f32(&quantized[&format!("{module}.biases")]);
        let restored =
            ops::dequantize(&quantized[name], as_f32(scales), &biases, group_size, bits).unwrap();
        assert_eq!(restored.shape(), expected.shape(), "{name}");
        assert!(
            restored.eq_values(expected).unwrap(),
            "{name} ({bits}-bit, group {group_size}) does not dequantize exactly"
        );
        checked += 1;
    }
    // 30 layers x 7 linear weights, plus the 8-bit embedding.
    assert_eq!(checked, 30 * 7 + 1);
}
