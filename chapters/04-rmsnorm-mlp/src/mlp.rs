//! The feed-forward part of a block: SiLU and the gated MLP (SwiGLU) of Llama and Qwen.

use mlx_rs::{error::Result, Array};

/// SiLU (also called swish): `x * sigmoid(x)`.
///
/// - `x`: any shape and float dtype; returns the same shape and dtype.
///
/// Book: week 1, chapter 4 (RMSNorm and the MLP), task 2.
pub fn silu(x: &Array) -> Result<Array> {
    todo!("chapter 4, task 2: x times sigmoid(x)")
}

/// The gated MLP: `down(silu(gate(x)) * up(x))`, without biases.
///
/// Book: week 1, chapter 4 (RMSNorm and the MLP), task 3.
pub struct Mlp {
    // Keep what `forward` needs: the three weights.
}

impl Mlp {
    /// - `gate_proj`, `up_proj`: `[I, E]` (`mlp.gate_proj.weight`, `mlp.up_proj.weight`).
    /// - `down_proj`: `[E, I]` (`mlp.down_proj.weight`).
    ///
    /// Book: week 1, chapter 4 (RMSNorm and the MLP), task 3.
    pub fn new(gate_proj: Array, up_proj: Array, down_proj: Array) -> Self {
        todo!("chapter 4, task 3: keep the three weights")
    }

    /// - `x`: `[..., E]`.
    /// - Returns `[..., E]`.
    /// - Fails (naming the weight) when the weights do not fit each other or `x`.
    ///
    /// Book: week 1, chapter 4 (RMSNorm and the MLP), task 3.
    pub fn forward(&self, x: &Array) -> Result<Array> {
        todo!("chapter 4, task 3: down_proj of silu(gate_proj x) * up_proj x")
    }
}
