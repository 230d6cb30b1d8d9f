//! Rotary position embedding (RoPE): rotate pairs of features by angles that grow with the
//! token's position, so that the dot product of a query and a key depends on their distance.

use crate::Offset;
use mlx_rs::{error::Result, Array};

/// Rotary position embedding over the last axis of `[B, L, H, D]` arrays.
///
/// Book: week 1, chapter 2 (RoPE).
pub struct RoPE {
    // Keep what `apply` needs: the number of features, the base and the layout.
}

impl RoPE {
    /// - `dims`: `D`, the features per head; even.
    /// - `base`: the `θ` of the frequencies `θ^(-2i/D)` (`rope_theta` in a model's config.json).
    /// - `traditional`: `true` rotates interleaved pairs `(2i, 2i+1)` (the RoFormer paper,
    ///   llama.cpp); `false` rotates `(i, i + D/2)`, HF's `rotate_half` (every model we load).
    ///
    /// Book: week 1, chapter 2 (RoPE), task 1.
    pub fn new(dims: i32, base: f32, traditional: bool) -> Self {
        todo!("chapter 2, task 1: keep the settings")
    }

    /// Applies rotary position embedding to the last dimension of `x`.
    ///
    /// - `x`: `[B, L, H, D]`, any float dtype; `D` equal to `dims`.
    /// - `offset`: position of `x[:, 0]` (or one per batch row).
    /// - Returns an array of the same shape and dtype.
    /// - Fails (naming the problem) when `x` is not `[B, L, H, dims]`, `dims` is odd, or
    ///   `Offset::PerRow` does not have `B` entries.
    ///
    /// Book: week 1, chapter 2 (RoPE), tasks 1-3.
    pub fn apply(&self, x: &Array, offset: Offset) -> Result<Array> {
        todo!("chapter 2, task 1: rotate feature pairs by position-dependent angles")
    }
}
