//! The week-2 model with quantized linear layers: loading it, and what its weights take. Given.

use crate::{Kernel, Quantization, QuantizedLoader};
use kv_cache::{Kernels, Llama3Scaling, LoadError, Model, ModelConfig};
use load::load_weights;
use std::path::Path;

/// Loads the model in `dir`: its quantized layers as stored, its float layers quantized to
/// `quantization` with groups of `group_size` (or kept as they are with `Quantization::None`);
/// `Kernel::Mlx` also runs normalization, RoPE and attention on MLX's fused kernels.
///
/// - Asking to quantize a directory that is already quantized is `LoadError::Quantization`.
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
    let scaling = Llama3Scaling::from_config(&config_path)?;
    Ok(Model::from_weights(config, load_weights(dir)?, &loader)?
        .with_kernels(kernels)
        .with_rope_scaling(scaling))
}

/// The linear layers' weight bytes, as float32 and as they are in memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WeightBytes {
    /// What they would take as float32 (`out x in x 4`).
    pub float32: usize,
    /// What they take now.
    pub in_memory: usize,
}

/// The bytes of the model's linear layers, the embedding table included: as float32 and in memory.
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
pub fn quantization_of(model: &Model) -> Option<(i32, i32)> {
    let layers = model.linear_layers();
    layers.get(1).or(layers.first())?.quantization()
}
