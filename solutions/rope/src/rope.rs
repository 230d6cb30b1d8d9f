//! Rotary position embedding (RoPE): rotate pairs of features by angles that grow with the
//! token's position, so that the dot product of a query and a key depends on their distance.

use crate::{shape4, Offset};
use mlx_rs::{
    error::{Exception, Result},
    ops, Array, Dtype,
};

/// Rotary position embedding over the last axis of `[B, L, H, D]` arrays.
///
/// Book: week 1, chapter 2 (RoPE).
pub struct RoPE {
    dims: i32,
    base: f32,
    traditional: bool,
}

impl RoPE {
    /// - `dims`: `D`, the features per head; even.
    /// - `base`: the `θ` of the frequencies `θ^(-2i/D)` (`rope_theta` in a model's config.json).
    /// - `traditional`: `true` rotates interleaved pairs `(2i, 2i+1)` (the RoFormer paper,
    ///   llama.cpp); `false` rotates `(i, i + D/2)`, HF's `rotate_half` (every model we load).
    ///
    /// Book: week 1, chapter 2 (RoPE), task 1.
    pub fn new(dims: i32, base: f32, traditional: bool) -> Self {
        RoPE {
            dims,
            base,
            traditional,
        }
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
        let [batch, length, heads, depth] = shape4(x, "RoPE", "x of shape [B, L, H, D]")?;
        if depth != self.dims || self.dims % 2 != 0 {
            return Err(Exception::custom(format!(
                "RoPE was made for dims {} (which must be even), but x has {depth} features per head",
                self.dims
            )));
        }
        let half = self.dims / 2;

        // Positions in float32: float16 cannot even hold position 2049.
        let positions = match offset {
            Offset::Start(start) => {
                Array::arange::<_, f32>(start, start + length, None)?.reshape(&[1, length])?
                // [1, L]
            }
            Offset::PerRow(starts) => {
                if starts.len() != batch as usize {
                    return Err(Exception::custom(format!(
                        "Offset::PerRow has {} offsets for a batch of {batch} rows",
                        starts.len()
                    )));
                }
                let starts = Array::from_slice(starts, &[batch, 1]).as_dtype(Dtype::Float32)?; // [B, 1]
                starts.add(Array::arange::<_, f32>(0, length, None)?)? // [B, L]
            }
        };
        // θ_i = base^(-2i/D) = exp(-i · ln(base) / (D/2)), the form MLX's fused kernel uses.
        let frequencies = Array::arange::<_, f32>(0, half, None)?
            .multiply(Array::from_f32(-self.base.ln() / half as f32))?
            .exp()?; // [D/2]
        let angles = positions
            .expand_dims(-1)?
            .multiply(&frequencies)?
            .expand_dims(2)?; // [B or 1, L, 1, D/2], the same for every head
        let cos = angles.cos()?.as_dtype(x.dtype())?;
        let sin = angles.sin()?.as_dtype(x.dtype())?;

        if self.traditional {
            // Pairs (2i, 2i+1) are neighbours: [B, L, H, D] -> [B, L, H, D/2, 2]
            let pairs = x.reshape(&[batch, length, heads, half, 2])?;
            let parts = pairs.split_equal(2, -1)?; // 2 x [B, L, H, D/2, 1]
            let (first, second) = rotate(
                &parts[0].squeeze_axes(&[-1])?, // [B, L, H, D/2]
                &parts[1].squeeze_axes(&[-1])?,
                &cos,
                &sin,
            )?;
            ops::stack(&[first, second], -1)? // [B, L, H, D/2, 2]
                .reshape(&[batch, length, heads, depth]) // [B, L, H, D]
        } else {
            // Pairs (i, i + D/2) are half a head apart.
            let halves = x.split_equal(2, -1)?; // 2 x [B, L, H, D/2]
            let (first, second) = rotate(&halves[0], &halves[1], &cos, &sin)?;
            ops::concatenate(&[first, second], -1) // [B, L, H, D]
        }
    }
}

/// Rotates each pair `(x1, x2)` by its angle: `(x1 cos - x2 sin, x1 sin + x2 cos)`.
fn rotate(x1: &Array, x2: &Array, cos: &Array, sin: &Array) -> Result<(Array, Array)> {
    let first = x1.multiply(cos)?.subtract(x2.multiply(sin)?)?;
    let second = x1.multiply(sin)?.add(x2.multiply(cos)?)?;
    Ok((first, second))
}
