//! What the loader knows about quantization: the target for a float model's layers, how a stored
//! layer is quantized (config.json's `"quantization"`), and the [`QuantizedLoader`] holding both.
//! Given: how it makes each layer is yours, in `src/loader.rs`.

use crate::Kernel;
use kv_cache::LoadError;
use std::str::FromStr;

/// What to do with a float model's linear layers as they load.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Quantization {
    /// Keep them as they are.
    None,
    /// 4-bit weights: about 1/8 of float32, plus a scale and a bias per group.
    Int4,
    /// 8-bit weights.
    Int8,
}

impl Quantization {
    /// `None` for [`Quantization::None`].
    pub fn bits(self) -> Option<i32> {
        match self {
            Quantization::None => None,
            Quantization::Int4 => Some(4),
            Quantization::Int8 => Some(8),
        }
    }
}

impl FromStr for Quantization {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        match text {
            "none" => Ok(Quantization::None),
            "int4" => Ok(Quantization::Int4),
            "int8" => Ok(Quantization::Int8),
            _ => Err(format!(
                "unknown quantization {text:?}: use none, int4 or int8"
            )),
        }
    }
}

/// `bits` and `group_size` of a layer stored quantized.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StoredQuantization {
    pub bits: i32,
    pub group_size: i32,
}

/// Makes each linear layer: quantized as stored, quantized now, or dense.
///
/// Given; how it makes a layer is yours (book: week 2, chapter 9 (quantized matmul), task 4).
pub struct QuantizedLoader {
    /// config.json's `"quantization"`: the default, and overrides by layer name (mlx-lm's
    /// format); `None` for a float checkpoint.
    pub(crate) stored: Option<serde_json::Value>,
    /// Float layers are quantized to this as they load.
    pub(crate) target: Quantization,
    pub(crate) group_size: i32,
    pub(crate) kernel: Kernel,
}

impl QuantizedLoader {
    pub fn new(
        stored: Option<serde_json::Value>,
        target: Quantization,
        group_size: i32,
        kernel: Kernel,
    ) -> Self {
        QuantizedLoader {
            stored,
            target,
            group_size,
            kernel,
        }
    }

    /// How layer `name` is stored: its own entry in config.json's `"quantization"`, else the
    /// default there; `None` for a float checkpoint. Fails on bits other than 4 and 8.
    pub fn stored_quantization(&self, name: &str) -> Result<Option<StoredQuantization>, LoadError> {
        let Some(stored) = &self.stored else {
            return Ok(None);
        };
        let entry = stored.get(name).unwrap_or(stored);
        let field = |key: &str| {
            entry[key]
                .as_i64()
                .and_then(|value| i32::try_from(value).ok())
                .ok_or_else(|| {
                    LoadError::Quantization(format!(
                        "config.json's \"quantization\" lacks an integer \"{key}\" for {name}"
                    ))
                })
        };
        let (bits, group_size) = (field("bits")?, field("group_size")?);
        if (bits != 4 && bits != 8) || group_size <= 0 {
            return Err(LoadError::Quantization(format!(
                "{name} is stored with {bits} bits in groups of {group_size}: this engine reads 4 and 8 bits"
            )));
        }
        Ok(Some(StoredQuantization { bits, group_size }))
    }
}
