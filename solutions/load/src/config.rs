//! The model's `config.json`, read into the numbers the layers need.

use crate::{Architecture, LoadError, ModelConfig};
use std::path::Path;

impl ModelConfig {
    /// Reads `config.json` at `path`.
    ///
    /// - `architectures[0]` picks the [`Architecture`]; anything else is
    ///   `LoadError::UnsupportedArchitecture`.
    /// - A missing or mistyped required field is `LoadError::BadConfig` naming the field.
    /// - Optional fields and their defaults: `num_key_value_heads` (= `num_attention_heads`),
    ///   `head_dim`, `rope_theta` (10000), `rms_norm_eps` (1e-6), `tie_word_embeddings` (false),
    ///   `max_position_embeddings` (4096), `eos_token_id` (none).
    ///
    /// Book: week 1, chapter 5 (loading a model), task 1.
    pub fn from_file(path: &Path) -> Result<Self, LoadError> {
        let text = std::fs::read_to_string(path).map_err(|error| LoadError::Unreadable {
            path: path.to_path_buf(),
            message: error.to_string(),
        })?;
        Self::from_json(path, &text)
    }

    /// [`ModelConfig::from_file`] on the text of `path` (the fuzzer calls it on its inputs).
    pub(crate) fn from_json(path: &Path, text: &str) -> Result<Self, LoadError> {
        let bad = |message: String| LoadError::BadConfig {
            path: path.to_path_buf(),
            message,
        };
        let json: serde_json::Value =
            serde_json::from_str(text).map_err(|error| bad(format!("not valid JSON: {error}")))?;

        let found = json["architectures"][0]
            .as_str()
            .unwrap_or("none given")
            .to_string();
        let architecture = match found.as_str() {
            "LlamaForCausalLM" => Architecture::Llama,
            "Qwen2ForCausalLM" => Architecture::Qwen2,
            "Qwen3ForCausalLM" => Architecture::Qwen3,
            _ => {
                return Err(LoadError::UnsupportedArchitecture {
                    path: path.to_path_buf(),
                    found,
                })
            }
        };
        let optional = |field: &str| json.get(field).filter(|value| !value.is_null());
        let integer = |field: &str| -> Result<i32, LoadError> {
            let value =
                optional(field).ok_or_else(|| bad(format!("the field `{field}` is missing")))?;
            value
                .as_i64()
                .and_then(|number| i32::try_from(number).ok())
                .filter(|number| *number > 0)
                .ok_or_else(|| {
                    bad(format!(
                        "`{field}` must be a positive integer, found {value}"
                    ))
                })
        };
        let number = |field: &str, default: f64| -> Result<f32, LoadError> {
            match optional(field) {
                None => Ok(default as f32),
                Some(value) => value
                    .as_f64()
                    .map(|n| n as f32)
                    .ok_or_else(|| bad(format!("`{field}` must be a number, found {value}"))),
            }
        };

        let hidden_size = integer("hidden_size")?;
        let num_attention_heads = integer("num_attention_heads")?;
        let eos_token_ids = match optional("eos_token_id") {
            None => Vec::new(),
            Some(serde_json::Value::Array(ids)) => ids
                .iter()
                .filter_map(|id| id.as_u64())
                .filter_map(|id| u32::try_from(id).ok())
                .collect(),
            Some(id) => id
                .as_u64()
                .and_then(|id| u32::try_from(id).ok())
                .map(|id| vec![id])
                .ok_or_else(|| {
                    bad(format!(
                        "`eos_token_id` must be an id or a list, found {id}"
                    ))
                })?,
        };
        let config = ModelConfig {
            architecture,
            vocab_size: integer("vocab_size")?,
            hidden_size,
            intermediate_size: integer("intermediate_size")?,
            num_hidden_layers: integer("num_hidden_layers")?,
            num_attention_heads,
            num_key_value_heads: if optional("num_key_value_heads").is_some() {
                integer("num_key_value_heads")?
            } else {
                num_attention_heads
            },
            head_dim: if optional("head_dim").is_some() {
                integer("head_dim")?
            } else {
                hidden_size / num_attention_heads
            },
            rope_theta: number("rope_theta", 10000.0)?,
            rms_norm_eps: number("rms_norm_eps", 1e-6)?,
            tie_word_embeddings: optional("tie_word_embeddings")
                .and_then(|value| value.as_bool())
                .unwrap_or(false),
            max_position_embeddings: if optional("max_position_embeddings").is_some() {
                integer("max_position_embeddings")?
            } else {
                4096
            },
            eos_token_ids,
        };
        // The layers multiply these as i32 shapes: a hostile config must not overflow them.
        for (heads, field) in [
            (config.num_attention_heads, "num_attention_heads"),
            (config.num_key_value_heads, "num_key_value_heads"),
        ] {
            if heads.checked_mul(config.head_dim).is_none() {
                return Err(bad(format!(
                    "`{field}` {heads} times `head_dim` {} overflows a 32-bit size",
                    config.head_dim
                )));
            }
        }
        if config.head_dim == 0 {
            return Err(bad(format!(
                "`hidden_size` {} is smaller than `num_attention_heads` {}: give `head_dim`",
                config.hidden_size, config.num_attention_heads
            )));
        }
        Ok(config)
    }
}
