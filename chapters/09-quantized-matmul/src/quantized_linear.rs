//! A linear layer whose weight stays quantized in memory: the [`Linear`] interface of
//! [`QuantizedLinear`] (what it holds, and how it is made, is in `src/quantized_weights.rs`).

use crate::{dequantize, quantized_matmul, Kernel, QuantizedLinear};
use kv_cache::Linear;
use mlx_rs::{error::Result, Array};

impl Linear for QuantizedLinear {
    /// `x`: `[..., in]` -> `[..., out]`, through the layer's [`Kernel`].
    ///
    /// Book: week 2, chapter 9 (quantized matmul), task 3.
    fn forward(&self, x: &Array) -> Result<Array> {
        let y = match self.kernel {
            Kernel::Mlx => self.mlx_matmul(x)?,
            Kernel::Course => {
                todo!("chapter 9, task 3: x W^T through your quantized_matmul (W is [out, in])")
            }
        }; // [..., out]
        self.add_bias(y) // [..., out]
    }

    /// Rows `ids` of `W`, as float: take the packed rows and their scales and biases, then
    /// dequantize only those (an embedding lookup never unpacks the whole table).
    ///
    /// - `ids`: `[...]` integers -> `[..., in]`, in the dtype of the scales.
    ///
    /// Book: week 2, chapter 9 (quantized matmul), task 3.
    fn rows(&self, ids: &Array) -> Result<Array> {
        todo!("chapter 9, task 3: take the rows of the packed weight, scales and biases, then dequantize them")
    }

    /// `(out, in)`: `in` counts the unpacked values, `32 / bits` per word.
    ///
    /// Book: week 2, chapter 9 (quantized matmul), task 3.
    fn shape(&self) -> (i32, i32) {
        todo!("chapter 9, task 3: out, and in unpacked from the packed width")
    }

    /// The packed weight, the scales, the biases and the bias.
    ///
    /// Book: week 2, chapter 9 (quantized matmul), task 3.
    fn nbytes(&self) -> usize {
        todo!("chapter 9, task 3: the bytes of every tensor the layer holds")
    }

    /// Given.
    fn quantization(&self) -> Option<(i32, i32)> {
        Some((self.bits, self.group_size))
    }
}
