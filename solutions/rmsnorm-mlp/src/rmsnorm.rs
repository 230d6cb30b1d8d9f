//! RMSNorm: scale every vector to a root-mean-square of 1, then each feature by a learned weight.

use mlx_rs::{
    error::{Exception, Result},
    Array, Dtype,
};

/// Root-mean-square normalization over the last axis.
///
/// Book: week 1, chapter 4 (RMSNorm and the MLP), task 1.
pub struct RmsNorm {
    weight: Array,
    eps: f32,
}

impl RmsNorm {
    /// - `weight`: `[E]`, one scale per feature (e.g. `input_layernorm.weight`).
    /// - `eps`: added to the mean square so that a zero vector does not divide by zero
    ///   (`rms_norm_eps`).
    ///
    /// Book: week 1, chapter 4 (RMSNorm and the MLP), task 1.
    pub fn new(weight: Array, eps: f32) -> Self {
        RmsNorm { weight, eps }
    }

    /// `x / sqrt(mean(x^2) + eps) * weight`, the mean over the last axis.
    ///
    /// - `x`: `[..., E]`, any float dtype.
    /// - Returns the same shape and dtype. The mean square is computed in float32 even for
    ///   float16 and bfloat16 input, whose squares overflow or lose precision.
    /// - Fails when the last axis of `x` does not match the weight.
    ///
    /// Book: week 1, chapter 4 (RMSNorm and the MLP), task 1.
    pub fn forward(&self, x: &Array) -> Result<Array> {
        let features = x.shape().last().copied().unwrap_or(0);
        if self.weight.shape() != [features] {
            return Err(Exception::custom(format!(
                "RmsNorm weight has shape {:?}, but x {:?} has {features} features",
                self.weight.shape(),
                x.shape()
            )));
        }
        let wide = x.as_dtype(Dtype::Float32)?; // [..., E]
        let mean_square = wide.square()?.mean_axis(-1, true)?; // [..., 1]
        let normalized = wide.multiply(mean_square.add(Array::from_f32(self.eps))?.rsqrt()?)?; // [..., E]
        normalized
            .as_dtype(x.dtype())?
            .multiply(self.weight.as_dtype(x.dtype())?) // [..., E]
    }
}
