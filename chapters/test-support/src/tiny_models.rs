//! The three tiny random models of `models/fixtures/` (llama-tiny, qwen2-tiny, qwen3-tiny): their
//! config, their weights by Hugging Face name, and the activations HF transformers computed with
//! them (`reference.safetensors`, see models/fixtures/generate.py).

use crate::fixtures::{fixture_path, load_fixture};
use mlx_rs::Array;
use std::collections::HashMap;

/// The tiny models, one per architecture: Llama (no biases), Qwen2 (q/k/v biases) and Qwen3
/// (per-head q/k RMSNorm, head_dim larger than hidden_size / num_heads).
pub const TINY_MODELS: [&str; 3] = ["llama-tiny", "qwen2-tiny", "qwen3-tiny"];

/// The fields of a tiny model's `config.json` that the layers need.
#[derive(Clone, Debug)]
pub struct TinyConfig {
    pub hidden_size: i32,
    pub intermediate_size: i32,
    pub num_hidden_layers: i32,
    pub num_attention_heads: i32,
    pub num_key_value_heads: i32,
    /// `head_dim` when the config has it, else `hidden_size / num_attention_heads`.
    pub head_dim: i32,
    pub rope_theta: f32,
    pub rms_norm_eps: f32,
}

/// One tiny model: its config, weights and reference activations.
pub struct TinyModel {
    pub name: String,
    pub config: TinyConfig,
    weights: HashMap<String, Array>,
    reference: HashMap<String, Array>,
}

impl TinyModel {
    /// The weight called `name` in `model.safetensors` (e.g. `model.layers.0.self_attn.q_proj.weight`).
    pub fn weight(&self, name: &str) -> Array {
        self.maybe_weight(name)
            .unwrap_or_else(|| panic!("{} has no weight {name}", self.name))
    }

    /// The weight called `name`, or `None` when this architecture has none (e.g. biases in Llama).
    pub fn maybe_weight(&self, name: &str) -> Option<Array> {
        self.weights.get(name).cloned()
    }

    /// The reference tensor called `name` (e.g. `seq2.layer0.attention_output`, shape `[L, E]`).
    pub fn reference(&self, name: &str) -> Array {
        self.reference
            .get(name)
            .cloned()
            .unwrap_or_else(|| panic!("{}/reference.safetensors has no {name}", self.name))
    }

    /// How many test sequences (`seq0`, `seq1`, ...) the reference holds.
    pub fn sequences(&self) -> usize {
        (0..)
            .take_while(|i| self.reference.contains_key(&format!("seq{i}.tokens")))
            .count()
    }
}

fn read_config(name: &str) -> TinyConfig {
    let path = fixture_path(&format!("{name}/config.json"));
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|error| panic!("cannot read {}: {error}", path.display()));
    let json: serde_json::Value = serde_json::from_str(&text)
        .unwrap_or_else(|error| panic!("{} is not JSON: {error}", path.display()));
    let number = |key: &str| {
        json[key]
            .as_f64()
            .unwrap_or_else(|| panic!("{} lacks the number {key}", path.display()))
    };
    let integer = |key: &str| number(key) as i32;
    let heads = integer("num_attention_heads");
    let hidden = integer("hidden_size");
    TinyConfig {
        hidden_size: hidden,
        intermediate_size: integer("intermediate_size"),
        num_hidden_layers: integer("num_hidden_layers"),
        num_attention_heads: heads,
        num_key_value_heads: integer("num_key_value_heads"),
        head_dim: json["head_dim"]
            .as_i64()
            .map_or(hidden / heads, |dim| dim as i32),
        rope_theta: number("rope_theta") as f32,
        rms_norm_eps: number("rms_norm_eps") as f32,
    }
}

/// Loads `models/fixtures/<name>/`: config.json, model.safetensors and reference.safetensors.
pub fn load_tiny_model(name: &str) -> TinyModel {
    TinyModel {
        name: name.to_string(),
        config: read_config(name),
        weights: load_fixture(&format!("{name}/model.safetensors")),
        reference: load_fixture(&format!("{name}/reference.safetensors")),
    }
}
