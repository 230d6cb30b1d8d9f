//! RMSNorm: scale every vector to a root-mean-square of 1, then each feature by a learned weight.

use mlx_rs::{error::Result, Array};

/// Root-mean-square normalization over the last axis.
///
/// Book: week 1, chapter 4 (RMSNorm and the MLP), task 1.
pub struct RmsNorm {
    // Keep what `forward` needs: the weight and epsilon.
}

impl RmsNorm {
    /// - `weight`: `[E]`, one scale per feature (e.g. `input_layernorm.weight`).
    /// - `eps`: added to the mean square so that a zero vector does not divide by zero
    ///   (`rms_norm_eps`).
    ///
    /// Book: week 1, chapter 4 (RMSNorm and the MLP), task 1.
    pub fn new(weight: Array, eps: f32) -> Self {
        todo!("chapter 4, task 1: keep the weight and epsilon")
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
        todo!(
            "chapter 4, task 1: mean of squares in float32, rsqrt, back to x's dtype, times weight"
        )
    }
}
