//! The feed-forward part of a block: SiLU and the gated MLP (SwiGLU) of Llama and Qwen.

use attention::linear;
use mlx_rs::{
    error::{Exception, Result},
    ops, Array,
};

/// SiLU (also called swish): `x * sigmoid(x)`.
///
/// - `x`: any shape and float dtype; returns the same shape and dtype.
///
/// Book: week 1, chapter 4 (RMSNorm and the MLP), task 2.
pub fn silu(x: &Array) -> Result<Array> {
    x.multiply(ops::sigmoid(x)?)
}

/// The gated MLP: `down(silu(gate(x)) * up(x))`, without biases.
///
/// Book: week 1, chapter 4 (RMSNorm and the MLP), task 3.
pub struct Mlp {
    gate_proj: Array,
    up_proj: Array,
    down_proj: Array,
}

impl Mlp {
    /// - `gate_proj`, `up_proj`: `[I, E]` (`mlp.gate_proj.weight`, `mlp.up_proj.weight`).
    /// - `down_proj`: `[E, I]` (`mlp.down_proj.weight`).
    ///
    /// Book: week 1, chapter 4 (RMSNorm and the MLP), task 3.
    pub fn new(gate_proj: Array, up_proj: Array, down_proj: Array) -> Self {
        Mlp {
            gate_proj,
            up_proj,
            down_proj,
        }
    }

    /// - `x`: `[..., E]`.
    /// - Returns `[..., E]`.
    /// - Fails (naming the weight) when the weights do not fit each other or `x`.
    ///
    /// Book: week 1, chapter 4 (RMSNorm and the MLP), task 3.
    pub fn forward(&self, x: &Array) -> Result<Array> {
        let hidden = x.shape().last().copied().unwrap_or(0);
        let intermediate = self.gate_proj.shape().first().copied().unwrap_or(0);
        for (name, weight, shape) in [
            ("gate_proj", &self.gate_proj, [intermediate, hidden]),
            ("up_proj", &self.up_proj, [intermediate, hidden]),
            ("down_proj", &self.down_proj, [hidden, intermediate]),
        ] {
            if weight.shape() != shape {
                return Err(Exception::custom(format!(
                    "{name} has shape {:?}, expected {shape:?} for x {:?}",
                    weight.shape(),
                    x.shape()
                )));
            }
        }
        let gate = linear(x, &self.gate_proj, None)?; // [..., I]
        let up = linear(x, &self.up_proj, None)?; // [..., I]
        let gated = silu(&gate)?.multiply(&up)?; // [..., I]
        linear(&gated, &self.down_proj, None) // [..., E]
    }
}
