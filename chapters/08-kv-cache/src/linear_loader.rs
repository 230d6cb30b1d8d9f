//! How the week-2 model makes each of its linear layers from a checkpoint's tensors: dense here,
//! quantized in chapter 9. Given.

use crate::{DenseLinear, Linear, Tensors};
use load::LoadError;

/// Builds each linear layer from the checkpoint's tensors: dense here, quantized in chapter 9.
pub trait LinearLoader {
    /// The layer `name` (like `model.layers.0.self_attn.q_proj`; the embedding table is
    /// `model.embed_tokens`) of shape `[out, in]`, from `{name}.weight` and, when present,
    /// `{name}.bias` (and whatever else its format stores), taken out of `tensors`.
    fn load(
        &self,
        name: &str,
        out_features: i32,
        in_features: i32,
        tensors: &mut Tensors,
    ) -> Result<Box<dyn Linear>, LoadError>;
}

/// Loads float weights as they are.
pub struct DenseLoader;

impl LinearLoader for DenseLoader {
    fn load(
        &self,
        name: &str,
        out_features: i32,
        in_features: i32,
        tensors: &mut Tensors,
    ) -> Result<Box<dyn Linear>, LoadError> {
        let weight = tensors.take(
            &format!("{name}.weight"),
            Some(&[out_features, in_features]),
        )?;
        let bias = tensors.take_optional(&format!("{name}.bias"), Some(&[out_features]))?;
        Ok(Box::new(DenseLinear::new(weight, bias)))
    }
}
