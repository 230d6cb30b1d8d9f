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
            Kernel::Course => quantized_matmul(
                x,
                &self.weight,
                &self.scales,
                &self.biases,
                self.group_size,
                self.bits,
                true,
            )?,
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
        let weight = self.weight.take_axis(ids, 0)?; // [..., in * bits / 32]
        let scales = self.scales.take_axis(ids, 0)?; // [..., in / G]
        let biases = self.biases.take_axis(ids, 0)?; // [..., in / G]
        dequantize(&weight, &scales, &biases, self.group_size, self.bits) // [..., in]
    }

    /// `(out, in)`: `in` counts the unpacked values, `32 / bits` per word.
    ///
    /// Book: week 2, chapter 9 (quantized matmul), task 3.
    fn shape(&self) -> (i32, i32) {
        let shape = self.weight.shape(); // [out, in * bits / 32]
        (shape[0], shape[1] * (32 / self.bits))
    }

    /// The packed weight, the scales, the biases and the bias.
    ///
    /// Book: week 2, chapter 9 (quantized matmul), task 3.
    fn nbytes(&self) -> usize {
        [&self.weight, &self.scales, &self.biases]
            .into_iter()
            .chain(&self.bias)
            .map(Array::nbytes)
            .sum()
    }

    /// Given.
    fn quantization(&self) -> Option<(i32, i32)> {
        Some((self.bits, self.group_size))
    }
}
