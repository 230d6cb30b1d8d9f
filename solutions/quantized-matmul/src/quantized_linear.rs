//! A linear layer whose weight stays quantized in memory.

use crate::{dequantize, quantized_matmul};
use kv_cache_solution::Linear;
use mlx_rs::{
    error::{Exception, Result},
    ops, Array,
};

/// Which code multiplies by a quantized weight.
///
/// Given.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kernel {
    /// MLX's fused `quantized_matmul`: it unpacks inside the matmul and never materializes the
    /// float weight. The engine's fast path.
    Mlx,
    /// This chapter's [`quantized_matmul`]; the engine uses it under `cargo xtask run --mine`.
    Course,
}

/// `y = x W^T + b` with `W` `[out, in]` quantized in groups along `in`.
///
/// Book: week 2, chapter 9 (quantized matmul), task 3.
pub struct QuantizedLinear {
    /// `[out, in * bits / 32]` uint32.
    weight: Array,
    /// `[out, in / group_size]`.
    scales: Array,
    biases: Array,
    /// `[out]`.
    bias: Option<Array>,
    group_size: i32,
    bits: i32,
    kernel: Kernel,
}

impl QuantizedLinear {
    /// A layer from tensors already quantized (MLX's layout: `{name}.weight`, `.scales`,
    /// `.biases`).
    ///
    /// - Fails when the shapes do not fit `group_size` and `bits` (see [`dequantize`]).
    ///
    /// Given.
    pub fn new(
        weight: Array,
        scales: Array,
        biases: Array,
        bias: Option<Array>,
        group_size: i32,
        bits: i32,
        kernel: Kernel,
    ) -> Result<Self> {
        if bits != 4 && bits != 8 {
            return Err(Exception::custom(format!(
                "bits must be 4 or 8, got {bits}"
            )));
        }
        let out = weight.shape()[0];
        let groups = weight.shape()[1] * (32 / bits) / group_size.max(1);
        if weight.ndim() != 2 || scales.shape() != [out, groups] || biases.shape() != scales.shape() {
            return Err(Exception::custom(format!(
                "a quantized weight {:?} ({bits} bits, groups of {group_size}) needs scales and biases [{out}, {groups}], got {:?} and {:?}",
                weight.shape(),
                scales.shape(),
                biases.shape()
            )));
        }
        Ok(QuantizedLinear {
            weight,
            scales,
            biases,
            bias,
            group_size,
            bits,
            kernel,
        })
    }

    /// Quantizes a float weight `[out, in]` with MLX's `quantize`.
    ///
    /// - Fails, naming the fix, when `group_size` does not divide `in` or is not 32, 64 or 128.
    ///
    /// Given.
    pub fn quantize(
        weight: &Array,
        bias: Option<Array>,
        group_size: i32,
        bits: i32,
        kernel: Kernel,
    ) -> Result<Self> {
        let inputs = weight.shape()[1];
        if ![32, 64, 128].contains(&group_size) || inputs % group_size != 0 {
            return Err(Exception::custom(format!(
                "group size {group_size} does not fit a layer with {inputs} inputs: it must be 32, 64 or 128 and divide the input size"
            )));
        }
        let (packed, scales, biases) = ops::quantize(weight, group_size, bits)?;
        QuantizedLinear::new(packed, scales, biases, bias, group_size, bits, kernel)
    }

    pub fn bits(&self) -> i32 {
        self.bits
    }

    pub fn group_size(&self) -> i32 {
        self.group_size
    }
}

impl Linear for QuantizedLinear {
    /// `x`: `[..., in]` -> `[..., out]`, through the layer's [`Kernel`].
    ///
    /// Book: week 2, chapter 9 (quantized matmul), task 3.
    fn forward(&self, x: &Array) -> Result<Array> {
        let (w, scales, biases) = (&self.weight, &self.scales, &self.biases);
        let y = match self.kernel {
            Kernel::Course => {
                quantized_matmul(x, w, scales, biases, self.group_size, self.bits, true)?
            }
            Kernel::Mlx => ops::quantized_matmul(
                x,
                w,
                scales,
                biases,
                true,
                self.group_size,
                self.bits,
            )?,
        }; // [..., out]
        match &self.bias {
            Some(bias) => y.add(bias),
            None => Ok(y),
        }
    }

    /// Rows `ids` of `W`: take the packed rows and their scales and biases, then dequantize
    /// only those (an embedding lookup never unpacks the whole table).
    ///
    /// Book: week 2, chapter 9 (quantized matmul), task 3.
    fn rows(&self, ids: &Array) -> Result<Array> {
        let weight = self.weight.take_axis(ids, 0)?; // [..., in * bits / 32]
        let scales = self.scales.take_axis(ids, 0)?; // [..., in / G]
        let biases = self.biases.take_axis(ids, 0)?;
        let (group_size, bits) = (self.group_size, self.bits);
        match self.kernel {
            Kernel::Course => dequantize(&weight, &scales, &biases, group_size, bits),
            Kernel::Mlx => ops::dequantize(&weight, &scales, &biases, group_size, bits),
        } // [..., in]
    }

    fn shape(&self) -> (i32, i32) {
        (self.weight.shape()[0], self.weight.shape()[1] * (32 / self.bits))
    }

    fn nbytes(&self) -> usize {
        [&self.weight, &self.scales, &self.biases]
            .into_iter()
            .chain(&self.bias)
            .map(Array::nbytes)
            .sum()
    }
}
