//! The linear layers of the week-2 model behind one interface, so that the model can hold dense
//! weights (here) or quantized ones (chapter 9) without knowing which.

use attention::linear;
use mlx_rs::{error::Result, Array};

/// A linear layer `y = x W^T + b` with `W`: `[out, in]`, stored in whichever format.
///
/// Given: chapter 9 implements it for quantized weights.
pub trait Linear {
    /// `x`: `[..., in]` -> `[..., out]`.
    fn forward(&self, x: &Array) -> Result<Array>;
    /// Rows `ids` of `W`, as float: `ids` `[...]` -> `[..., in]`. An embedding table `[V, E]`
    /// is a linear layer too: looking tokens up takes its rows, and a tied output layer
    /// multiplies by it.
    fn rows(&self, ids: &Array) -> Result<Array>;
    /// `(out, in)`.
    fn shape(&self) -> (i32, i32);
    /// The bytes its tensors take in memory.
    fn nbytes(&self) -> usize;
    /// `(bits, group_size)` when the weight is stored quantized; `None` for float weights.
    fn quantization(&self) -> Option<(i32, i32)> {
        None
    }
}

/// A linear layer with float weights.
///
/// Given.
pub struct DenseLinear {
    weight: Array,
    bias: Option<Array>,
}

impl DenseLinear {
    /// `weight`: `[out, in]`; `bias`: `[out]`.
    pub fn new(weight: Array, bias: Option<Array>) -> Self {
        DenseLinear { weight, bias }
    }
}

impl Linear for DenseLinear {
    fn forward(&self, x: &Array) -> Result<Array> {
        linear(x, &self.weight, self.bias.as_ref())
    }

    fn rows(&self, ids: &Array) -> Result<Array> {
        self.weight.take_axis(ids, 0)
    }

    fn shape(&self) -> (i32, i32) {
        (self.weight.shape()[0], self.weight.shape()[1])
    }

    fn nbytes(&self) -> usize {
        self.weight.nbytes() + self.bias.as_ref().map_or(0, Array::nbytes)
    }
}
