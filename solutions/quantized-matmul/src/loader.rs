//! Loading the week-2 model with quantized linear layers: as stored in an MLX-quantized
//! directory, or quantized from float weights as they load.

use crate::{Kernel, QuantizedLinear};
use kv_cache::{DenseLinear, Kernels, Linear, LinearLoader, Model, Tensors};
use load::{load_weights, LoadError, ModelConfig};
use mlx_rs::Dtype;
use std::{path::Path, str::FromStr};

/// What to do with a float model's linear layers as they load.
///
/// Given.
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
///
/// Given.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StoredQuantization {
    pub bits: i32,
    pub group_size: i32,
}

/// Makes each linear layer: quantized as stored, quantized now, or dense.
///
/// Book: week 2, chapter 9 (quantized matmul), task 4.
pub struct QuantizedLoader {
    /// config.json's `"quantization"`: the default, and overrides by layer name (mlx-lm's
    /// format); `None` for a float checkpoint.
    stored: Option<serde_json::Value>,
    /// Float layers are quantized to this as they load.
    target: Quantization,
    group_size: i32,
    kernel: Kernel,
}

impl QuantizedLoader {
    /// Given.
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
    ///
    /// Given.
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

impl LinearLoader for QuantizedLoader {
    /// - A layer with `{name}.scales` among the tensors is stored quantized: a
    ///   [`QuantizedLinear`] from `{name}.weight` `[out, in * bits / 32]`, `.scales` and `.biases`
    ///   `[out, in / group_size]`, and `.bias` `[out]` when present, with the bits and group size
    ///   of [`QuantizedLoader::stored_quantization`]. Checkpoints store scales and biases in
    ///   float16: cast them to float32, the model's dtype (exact; float16 ones would round every
    ///   dequantized weight, and turn the activations into float16).
    /// - Any other layer is float, `{name}.weight` `[out, in]` (and `.bias`): quantized with
    ///   [`QuantizedLinear::quantize`] when the target is not `Quantization::None`, else a
    ///   `DenseLinear`.
    /// - Errors: a missing or misshapen tensor as `Tensors::take` reports it; a quantization
    ///   that does not fit is `LoadError::Quantization` naming the layer, its input size and,
    ///   when quantizing, the `--quant-group-size` flag (an MLX error's text is `error.what()`).
    ///
    /// Book: week 2, chapter 9 (quantized matmul), task 4.
    fn load(
        &self,
        name: &str,
        out_features: i32,
        in_features: i32,
        tensors: &mut Tensors,
    ) -> Result<Box<dyn Linear>, LoadError> {
        let bias = tensors.take_optional(&format!("{name}.bias"), Some(&[out_features]))?; // [out]
        if tensors.contains(&format!("{name}.scales")) {
            let Some(StoredQuantization { bits, group_size }) = self.stored_quantization(name)?
            else {
                return Err(LoadError::Quantization(format!(
                    "{name} is stored quantized ({name}.scales) but config.json has no \"quantization\""
                )));
            };
            let packed = [out_features, in_features * bits / 32]; // uint32 words
            let groups = [out_features, in_features / group_size];
            let weight = tensors.take(&format!("{name}.weight"), Some(&packed))?;
            // float16 in the checkpoint; float32 is exact and keeps the model in float32.
            let mut float32 = |part: &str| {
                tensors
                    .take(&format!("{name}.{part}"), Some(&groups))? // [out, in / G]
                    .as_dtype(Dtype::Float32)
                    .map_err(LoadError::from)
            };
            let (scales, biases) = (float32("scales")?, float32("biases")?);
            let layer =
                QuantizedLinear::new(weight, scales, biases, bias, group_size, bits, self.kernel)
                    .map_err(|error| LoadError::Quantization(format!("{name}: {}", error.what())))?;
            return Ok(Box::new(layer));
        }
        let weight = tensors.take(
            &format!("{name}.weight"),
            Some(&[out_features, in_features]),
        )?; // [out, in]
        let Some(bits) = self.target.bits() else {
            return Ok(Box::new(DenseLinear::new(weight, bias)));
        };
        let layer = QuantizedLinear::quantize(&weight, bias, self.group_size, bits, self.kernel)
            .map_err(|error| {
                LoadError::Quantization(format!(
                    "cannot quantize {name} ({in_features} inputs) to {bits} bits: {}; choose another --quant-group-size",
                    error.what()
                ))
            })?;
        Ok(Box::new(layer))
    }
}

/// Loads the model in `dir`: its quantized layers as stored, its float layers quantized to
/// `quantization` with groups of `group_size` (or kept as they are with `Quantization::None`);
/// `Kernel::Mlx` also runs normalization, RoPE and attention on MLX's fused kernels.
///
/// - Asking to quantize a directory that is already quantized is `LoadError::Quantization`.
///
/// Given.
pub fn load_model(
    dir: &Path,
    quantization: Quantization,
    group_size: i32,
    kernel: Kernel,
) -> Result<Model, LoadError> {
    let config_path = dir.join("config.json");
    let config = ModelConfig::from_file(&config_path)?;
    let text = std::fs::read_to_string(&config_path).map_err(|error| LoadError::Unreadable {
        path: config_path.clone(),
        message: error.to_string(),
    })?;
    let json: serde_json::Value =
        serde_json::from_str(&text).map_err(|error| LoadError::BadConfig {
            path: config_path.clone(),
            message: format!("not valid JSON: {error}"),
        })?;
    let stored = json
        .get("quantization")
        .filter(|value| !value.is_null())
        .cloned();
    if stored.is_some() && quantization != Quantization::None {
        return Err(LoadError::Quantization(format!(
            "{} is already quantized (see \"quantization\" in its config.json): pass --quantization none",
            dir.display()
        )));
    }
    let loader = QuantizedLoader::new(stored, quantization, group_size, kernel);
    let kernels = match kernel {
        Kernel::Mlx => Kernels::Fused,
        Kernel::Course => Kernels::Course,
    };
    Ok(Model::from_weights(config, load_weights(dir)?, &loader)?.with_kernels(kernels))
}

/// The linear layers' weight bytes, as float32 and as they are in memory.
///
/// Given.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WeightBytes {
    /// What they would take as float32 (`out x in x 4`).
    pub float32: usize,
    /// What they take now.
    pub in_memory: usize,
}

/// Given.
pub fn weight_bytes(model: &Model) -> WeightBytes {
    let layers = model.linear_layers();
    WeightBytes {
        float32: layers
            .iter()
            .map(|layer| {
                let (out, inputs) = layer.shape();
                out as usize * inputs as usize * 4
            })
            .sum(),
        in_memory: layers.iter().map(|layer| layer.nbytes()).sum(),
    }
}

/// `(bits, group_size)` of the model's linear layers (the first after the embedding, which a
/// checkpoint may quantize differently); `None` for float weights.
///
/// Given.
pub fn quantization_of(model: &Model) -> Option<(i32, i32)> {
    let layers = model.linear_layers();
    layers.get(1).or(layers.first())?.quantization()
}
