//! Llama 3's RoPE frequency scaling (`"rope_scaling": {"rope_type": "llama3", ...}` in
//! config.json, Llama 3.1 and 3.2): the low frequencies are stretched so that the model reads
//! contexts longer than it was pretrained on. Given: the engine's fused RoPE (`Kernels::Fused`)
//! applies it; your RoPE of chapter 2 runs the plain frequencies.

use load::LoadError;
use std::path::Path;

/// What config.json's `rope_scaling` says when its `rope_type` is `llama3`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Llama3Scaling {
    pub factor: f32,
    pub low_freq_factor: f32,
    pub high_freq_factor: f32,
    pub original_max_position_embeddings: f32,
}

impl Llama3Scaling {
    /// The scaling in the config.json at `path`: `None` without `rope_scaling` (or with `null`);
    /// a `BadConfig` error for another `rope_type`, which this engine does not run.
    pub fn from_config(path: &Path) -> Result<Option<Self>, LoadError> {
        let bad = |message: String| LoadError::BadConfig {
            path: path.to_path_buf(),
            message,
        };
        let text = std::fs::read_to_string(path).map_err(|error| LoadError::Unreadable {
            path: path.to_path_buf(),
            message: error.to_string(),
        })?;
        let json: serde_json::Value =
            serde_json::from_str(&text).map_err(|error| bad(format!("not valid JSON: {error}")))?;
        let Some(scaling) = json.get("rope_scaling").filter(|value| !value.is_null()) else {
            return Ok(None);
        };
        let kind = scaling
            .get("rope_type")
            .or_else(|| scaling.get("type"))
            .and_then(|kind| kind.as_str())
            .unwrap_or("");
        if kind != "llama3" {
            return Err(bad(format!(
                "rope_scaling of type {kind:?} is not supported (only \"llama3\" is)"
            )));
        }
        let number = |key: &str, default: Option<f32>| match scaling
            .get(key)
            .and_then(|value| value.as_f64())
        {
            Some(value) => Ok(value as f32),
            None => default.ok_or_else(|| bad(format!("rope_scaling has no number {key:?}"))),
        };
        Ok(Some(Llama3Scaling {
            factor: number("factor", None)?,
            low_freq_factor: number("low_freq_factor", Some(1.0))?,
            high_freq_factor: number("high_freq_factor", Some(4.0))?,
            original_max_position_embeddings: number(
                "original_max_position_embeddings",
                Some(8192.0),
            )?,
        }))
    }

    /// The `D / 2` periods MLX's `fast::rope` takes as `freqs` (feature pair `i` turns by
    /// `position / period_i`), as transformers' `_compute_llama3_parameters` and mlx-lm's
    /// `Llama3RoPE` compute them: `theta^(2i/D)`, times `factor` where the wavelength
    /// `2 pi period` exceeds `original / low_freq_factor`, unchanged below
    /// `original / high_freq_factor`, and blended smoothly between.
    pub fn periods(&self, head_dim: i32, theta: f32) -> Vec<f32> {
        let Llama3Scaling {
            factor,
            low_freq_factor,
            high_freq_factor,
            original_max_position_embeddings: original,
        } = *self;
        let (low_freq_wavelen, high_freq_wavelen) =
            (original / low_freq_factor, original / high_freq_factor);
        (0..head_dim / 2)
            .map(|i| {
                let period = theta.powf(2.0 * i as f32 / head_dim as f32);
                let wavelen = 2.0 * std::f32::consts::PI * period;
                if wavelen < high_freq_wavelen {
                    period
                } else if wavelen > low_freq_wavelen {
                    period * factor
                } else {
                    let smooth = (original / wavelen - low_freq_factor)
                        / (high_freq_factor - low_freq_factor);
                    period / ((1.0 - smooth) / factor + smooth)
                }
            })
            .collect()
    }
}
