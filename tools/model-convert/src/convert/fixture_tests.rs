//! The tiny fixture models (models/fixtures/{llama,qwen2,qwen3}-tiny) written as GGUF files the
//! way llama.cpp's converter writes them (its tensor names, Llama's q/k rows permuted, norms and
//! biases in F32, matrices quantized with ggml's reference quantizers), converted back, and compared
//! with the fixture's own weights, config and tokenizer.

use std::path::PathBuf;

use rstest::rstest;
use safetensors::SafeTensors;
use serde_json::Value as Json;

use super::*;
use crate::{
    test_gguf::{array, string, Builder},
    tokenizer,
};

/// ggml type ids.
const F32: u32 = 0;
const F16: u32 = 1;
const Q4_0: u32 = 2;
const Q4_1: u32 = 3;
const Q8_0: u32 = 8;

fn fixture_dir(model: &str) -> PathBuf {
    crate::workspace_root().join("models/fixtures").join(model)
}

fn read_json(path: &Path) -> Json {
    serde_json::from_slice(&std::fs::read(path).expect("fixture file")).expect("JSON")
}

/// The fixture's tensors, by HF name, as float32 with their HF shape.
fn fixture_tensors(model: &str) -> Vec<(String, Vec<usize>, Vec<f32>)> {
    let bytes = std::fs::read(fixture_dir(model).join("model.safetensors")).expect("fixture");
    let st = SafeTensors::deserialize(&bytes).expect("safetensors");
    let mut out: Vec<_> = st
        .tensors()
        .into_iter()
        .map(|(name, view)| {
            let values = view
                .data()
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes(b.try_into().expect("4 bytes")))
                .collect();
            (name, view.shape().to_vec(), values)
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// llama.cpp's name for an HF tensor name.
fn gguf_name(hf: &str) -> String {
    match hf {
        "model.embed_tokens.weight" => return "token_embd.weight".into(),
        "model.norm.weight" => return "output_norm.weight".into(),
        "lm_head.weight" => return "output.weight".into(),
        _ => {}
    }
    let rest = hf.strip_prefix("model.layers.").expect("a layer tensor");
    let (layer, rest) = rest.split_once('.').expect("layer.module");
    let (module, suffix) = rest.rsplit_once('.').expect("module.suffix");
    let kind = match module {
        "self_attn.q_proj" => "attn_q",
        "self_attn.k_proj" => "attn_k",
        "self_attn.v_proj" => "attn_v",
        "self_attn.o_proj" => "attn_output",
        "self_attn.q_norm" => "attn_q_norm",
        "self_attn.k_norm" => "attn_k_norm",
        "mlp.gate_proj" => "ffn_gate",
        "mlp.up_proj" => "ffn_up",
        "mlp.down_proj" => "ffn_down",
        "input_layernorm" => "attn_norm",
        "post_attention_layernorm" => "ffn_norm",
        other => panic!("unknown module {other}"),
    };
    format!("blk.{layer}.{kind}.{suffix}")
}

/// llama.cpp's `LlamaModel.permute`: HF row `a * D/2 + b` of each head goes to row `2b + a`.
fn permute(values: &[f32], n_head: usize, row_len: usize) -> Vec<f32> {
    let head_dim = values.len() / row_len / n_head;
    let half = head_dim / 2;
    let mut out = vec![0.0; values.len()];
    for head in 0..n_head {
        for a in 0..2 {
            for b in 0..half {
                let (from, to) = (head * head_dim + a * half + b, head * head_dim + 2 * b + a);
                out[to * row_len..(to + 1) * row_len]
                    .copy_from_slice(&values[from * row_len..(from + 1) * row_len]);
            }
        }
    }
    out
}

fn f16_le(x: f32) -> [u8; 2] {
    f16::from_f32(x).to_le_bytes()
}

/// ggml's reference quantizers (`quantize_row_*_ref` in ggml-quants.c).
fn quantize(ty: u32, values: &[f32]) -> Vec<u8> {
    let mut out = vec![];
    match ty {
        F32 => values.iter().for_each(|v| out.extend(v.to_le_bytes())),
        F16 => values.iter().for_each(|v| out.extend(f16_le(*v))),
        Q8_0 => {
            for block in values.chunks(32) {
                let amax = block.iter().fold(0f32, |m, v| m.max(v.abs()));
                let d = amax / 127.0;
                let id = if d != 0.0 { 1.0 / d } else { 0.0 };
                out.extend(f16_le(d));
                out.extend(block.iter().map(|v| (v * id).round() as i8 as u8));
            }
        }
        Q4_0 => {
            for block in values.chunks(32) {
                let max = block
                    .iter()
                    .fold(0f32, |m, &v| if v.abs() > m.abs() { v } else { m });
                let d = max / -8.0;
                let id = if d != 0.0 { 1.0 / d } else { 0.0 };
                let q = |v: f32| ((v * id + 8.5) as u8).min(15);
                out.extend(f16_le(d));
                out.extend((0..16).map(|j| q(block[j]) | (q(block[j + 16]) << 4)));
            }
        }
        Q4_1 => {
            for block in values.chunks(32) {
                let min = block.iter().fold(f32::INFINITY, |m, &v| m.min(v));
                let max = block.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v));
                let d = (max - min) / 15.0;
                let id = if d != 0.0 { 1.0 / d } else { 0.0 };
                let q = |v: f32| (((v - min) * id + 0.5) as u8).min(15);
                out.extend(f16_le(d));
                out.extend(f16_le(min));
                out.extend((0..16).map(|j| q(block[j]) | (q(block[j + 16]) << 4)));
            }
        }
        other => panic!("no quantizer for type {other}"),
    }
    out
}

/// The fixture model as a GGUF whose matrices are of type `ty`.
fn fixture_gguf(model: &str, ty: u32) -> Vec<u8> {
    let dir = fixture_dir(model);
    let config = read_json(&dir.join("config.json"));
    let tokenizer_config = read_json(&dir.join("tokenizer_config.json"));
    let tokenizer_json = read_json(&dir.join("tokenizer.json"));
    let arch = config["model_type"].as_str().expect("model_type");
    let c = |key: &str| config[key].as_u64().expect(key) as u32;
    let head_dim = config["head_dim"]
        .as_u64()
        .map_or(c("hidden_size") / c("num_attention_heads"), |d| d as u32);

    let vocab = tokenizer_json["model"]["vocab"].as_object().expect("vocab");
    let mut tokens = vec![String::new(); c("vocab_size") as usize];
    let mut types = vec![1i32; tokens.len()];
    for (text, id) in vocab {
        tokens[id.as_u64().expect("id") as usize] = text.clone();
    }
    for added in tokenizer_json["added_tokens"].as_array().expect("added") {
        let id = added["id"].as_u64().expect("id") as usize;
        tokens[id] = added["content"].as_str().expect("content").into();
        types[id] = if added["special"] == true { 3 } else { 4 };
    }
    let merges: Vec<Vec<u8>> = tokenizer_json["model"]["merges"]
        .as_array()
        .expect("merges")
        .iter()
        .map(|m| {
            string(&format!(
                "{} {}",
                m[0].as_str().expect("a"),
                m[1].as_str().expect("b")
            ))
        })
        .collect();
    let eos = tokens
        .iter()
        .position(|t| Some(t.as_str()) == tokenizer_config["eos_token"].as_str())
        .expect("eos token") as u32;

    let key = |k: &str| format!("{arch}.{k}");
    let mut b = Builder::new()
        .str("general.architecture", arch)
        .u32(&key("block_count"), c("num_hidden_layers"))
        .u32(&key("context_length"), c("max_position_embeddings"))
        .u32(&key("embedding_length"), c("hidden_size"))
        .u32(&key("feed_forward_length"), c("intermediate_size"))
        .u32(&key("attention.head_count"), c("num_attention_heads"))
        .u32(&key("attention.head_count_kv"), c("num_key_value_heads"))
        .u32(&key("attention.key_length"), head_dim)
        .u32(&key("attention.value_length"), head_dim)
        .u32(&key("rope.dimension_count"), head_dim)
        .f32(
            &key("rope.freq_base"),
            config["rope_theta"].as_f64().expect("theta") as f32,
        )
        .f32(
            &key("attention.layer_norm_rms_epsilon"),
            config["rms_norm_eps"].as_f64().expect("eps") as f32,
        )
        .str("tokenizer.ggml.model", "gpt2")
        // The fixtures' pre-tokenizer is SmolLM2's: Digits(individual) + ByteLevel.
        .str("tokenizer.ggml.pre", "smollm")
        .kv(
            "tokenizer.ggml.tokens",
            9,
            &array(8, &tokens.iter().map(|t| string(t)).collect::<Vec<_>>()),
        )
        .kv(
            "tokenizer.ggml.token_type",
            9,
            &array(
                5,
                &types
                    .iter()
                    .map(|t| t.to_le_bytes().to_vec())
                    .collect::<Vec<_>>(),
            ),
        )
        .kv("tokenizer.ggml.merges", 9, &array(8, &merges))
        .u32("tokenizer.ggml.eos_token_id", eos)
        .str(
            "tokenizer.chat_template",
            tokenizer_config["chat_template"]
                .as_str()
                .expect("template"),
        );
    for (name, shape, values) in fixture_tensors(model) {
        let (n_head, n_kv) = (c("num_attention_heads"), c("num_key_value_heads"));
        let row_len = shape.iter().skip(1).product();
        let values = match (arch, name.rsplit('.').nth(1)) {
            ("llama", Some("q_proj")) => permute(&values, n_head as usize, row_len),
            ("llama", Some("k_proj")) => permute(&values, n_kv as usize, row_len),
            _ => values,
        };
        // As llama.cpp: vectors (norms, biases) stay F32.
        let tensor_ty = if shape.len() == 1 { F32 } else { ty };
        let dims: Vec<u64> = shape.iter().rev().map(|&d| d as u64).collect();
        b = b.tensor(
            &gguf_name(&name),
            &dims,
            tensor_ty,
            &quantize(tensor_ty, &values),
        );
    }
    b.build()
}

/// Converts the GGUF bytes into a float32 model directory (what `models convert` writes).
fn convert_to_dir(model: &str, bytes: Vec<u8>, dir: &Path) {
    let gguf = Gguf::parse(Path::new(&format!("{model}.gguf")), bytes).expect("valid GGUF");
    let config = HfConfig::from_gguf(&gguf).expect("config");
    HfConfig::check_tensor_types(&gguf).expect("supported types");
    let tokenizer = tokenizer::build(&gguf).expect("tokenizer");
    write_float32(&gguf, &config, dir, &ProgressBar::hidden()).expect("float32 conversion");
    tokenizer::write_files(&gguf, &tokenizer, dir).expect("tokenizer files");
}

/// The largest error ggml's quantizer of `ty` may make on a block of 32: half a step, a whole
/// step where Q4_0 clamps 16 to 15, plus the rounding of the scale (and Q4_1's minimum) to f16.
fn error_bound(ty: u32, block: &[f32]) -> f32 {
    let amax = block.iter().fold(0f32, |m, v| m.max(v.abs()));
    let (min, max) = block
        .iter()
        .fold((f32::INFINITY, f32::NEG_INFINITY), |(lo, hi), &v| {
            (lo.min(v), hi.max(v))
        });
    let step = match ty {
        F32 => return 0.0,
        F16 => return amax * 2f32.powi(-11),
        Q8_0 => amax / 127.0 * 0.5,
        Q4_0 => amax / 8.0,
        Q4_1 => (max - min) / 15.0 * 0.5,
        _ => unreachable!(),
    };
    step * 1.02 + amax * 2f32.powi(-10) + 1e-7
}

#[rstest]
#[case::llama_f32("llama-tiny", F32)]
#[case::llama_q8_0("llama-tiny", Q8_0)]
#[case::llama_q4_0("llama-tiny", Q4_0)]
#[case::qwen2_f16("qwen2-tiny", F16)]
#[case::qwen2_q4_1("qwen2-tiny", Q4_1)]
#[case::qwen2_q8_0("qwen2-tiny", Q8_0)]
#[case::qwen3_f32("qwen3-tiny", F32)]
#[case::qwen3_f16("qwen3-tiny", F16)]
#[case::qwen3_q4_0("qwen3-tiny", Q4_0)]
#[case::qwen3_q4_1("qwen3-tiny", Q4_1)]
fn a_fixture_gguf_converts_back_to_the_fixture_weights(#[case] model: &str, #[case] ty: u32) {
    let out = tempfile::tempdir().expect("tempdir");
    convert_to_dir(model, fixture_gguf(model, ty), out.path());

    let bytes = std::fs::read(out.path().join("model.safetensors")).expect("written");
    let st = SafeTensors::deserialize(&bytes).expect("valid safetensors");
    let expected = fixture_tensors(model);
    let mut names = st.names();
    names.sort();
    assert_eq!(
        names,
        expected
            .iter()
            .map(|(n, ..)| n.as_str())
            .collect::<Vec<_>>(),
        "{model}: the converted tensors are not the fixture's"
    );
    for (name, shape, want) in &expected {
        let view = st.tensor(name).expect("present");
        assert_eq!(view.shape(), shape.as_slice(), "{model}: shape of {name}");
        let got: Vec<f32> = view
            .data()
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes(b.try_into().expect("4 bytes")))
            .collect();
        let tensor_ty = if shape.len() == 1 { F32 } else { ty };
        for (block, (got, want)) in got.chunks(32).zip(want.chunks(32)).enumerate() {
            let bound = error_bound(tensor_ty, want);
            for (i, (g, w)) in got.iter().zip(want).enumerate() {
                assert!(
                    (g - w).abs() <= bound,
                    "{model} as type {tensor_ty}: {name}[{}] is {g}, the fixture has {w} (bound {bound})",
                    block * 32 + i
                );
            }
        }
    }

    let fixture_config = read_json(&fixture_dir(model).join("config.json"));
    let config = read_json(&out.path().join("config.json"));
    for key in [
        "architectures",
        "model_type",
        "hidden_size",
        "intermediate_size",
        "num_hidden_layers",
        "num_attention_heads",
        "num_key_value_heads",
        "rms_norm_eps",
        "rope_theta",
        "tie_word_embeddings",
        "max_position_embeddings",
        "vocab_size",
        "eos_token_id",
    ] {
        let (got, want) = (&config[key], &fixture_config[key]);
        let same = match (got.as_f64(), want.as_f64()) {
            (Some(g), Some(w)) => (g - w).abs() <= w.abs() * 1e-6,
            _ => got == want,
        };
        assert!(
            same,
            "{model}: config.json {key} is {got}, the fixture has {want}"
        );
    }
}

#[test]
fn a_converted_fixture_tokenizes_and_templates_as_the_original() {
    let out = tempfile::tempdir().expect("tempdir");
    convert_to_dir("qwen3-tiny", fixture_gguf("qwen3-tiny", Q8_0), out.path());
    let load = |dir: &Path| {
        tokenizers::Tokenizer::from_file(dir.join("tokenizer.json")).expect("tokenizer.json")
    };
    let (ours, theirs) = (load(out.path()), load(&fixture_dir("qwen3-tiny")));
    let text = "<|im_start|>user\nThe sea is wide, 12345 waves!<|im_end|>\n";
    let ids = |t: &tokenizers::Tokenizer| t.encode(text, false).expect("encode").get_ids().to_vec();
    assert_eq!(ids(&ours), ids(&theirs));
    let template =
        |dir: &Path| read_json(&dir.join("tokenizer_config.json"))["chat_template"].clone();
    assert_eq!(template(out.path()), template(&fixture_dir("qwen3-tiny")));
}

#[test]
fn unsupported_tensor_types_are_all_named() {
    let gguf = Builder::new()
        .str("general.architecture", "llama")
        .tensor("token_embd.weight", &[256, 1], 14, &[0; 210])
        .tensor("output.weight", &[256, 1], 12, &[0; 144])
        .tensor("blk.0.ffn_down.weight", &[256, 1], 12, &[0; 144])
        .tensor("output_norm.weight", &[32], F32, &[0; 128])
        .build();
    let gguf = Gguf::parse(Path::new("mixed.gguf"), gguf).expect("valid GGUF");
    let error = HfConfig::check_tensor_types(&gguf)
        .expect_err("K-quants are not read")
        .to_string();
    assert!(
        error.contains("mixed.gguf: tensor types Q4K (2 tensors, e.g. output.weight), Q6K (1 tensor: token_embd.weight) cannot be read")
            && error.contains("supported: F32, F16, BF16, Q8_0, Q4_0, Q4_1"),
        "{error}"
    );
}
