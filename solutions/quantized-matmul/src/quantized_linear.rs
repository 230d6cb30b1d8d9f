//! A linear layer whose weight stays quantized in memory.

use crate::{dequantize, quantized_matmul};
use kv_cache::Linear;
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
    /// float weight. The engine's fast path: [`load_model`](crate::load_model) then also runs
    /// the other layers on MLX's fused kernels (`Kernels::Fused`).
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
    /// `[out, in / group_size]`.
    biases: Array,
    /// `[out]`.
    bias: Option<Array>,
    group_size: i32,
    bits: i32,
    kernel: Kernel,
}

fn check_bits(bits: i32) -> Result<()> {
    if bits == 4 || bits == 8 {
        Ok(())
    } else {
        Err(Exception::custom(format!(
            "bits must be 4 or 8, got {bits}"
        )))
    }
}

impl QuantizedLinear {
    /// A layer from tensors already quantized, in MLX's layout (`{name}.weight`, `.scales`,
    /// `.biases` in an MLX checkpoint).
    ///
    /// - Fails when `bits` is not 4 or 8, or the shapes do not fit `group_size` and `bits`.
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
        check_bits(bits)?;
        let fits = match weight.shape() {
            &[out, words] => {
                let inputs = words * (32 / bits);
                group_size > 0
                    && inputs % group_size == 0
                    && scales.shape() == [out, inputs / group_size]
                    && biases.shape() == scales.shape()
                    && bias.as_ref().is_none_or(|bias| bias.shape() == [out])
            }
            _ => false,
        };
        if !fits {
            return Err(Exception::custom(format!(
                "a quantized weight {:?} ({bits} bits, groups of {group_size}) does not fit scales {:?}, biases {:?} and bias {:?}",
                weight.shape(),
                scales.shape(),
                biases.shape(),
                bias.as_ref().map(Array::shape)
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

    /// Quantizes a float weight `[out, in]` with MLX's `quantize` (scales and biases in the
    /// weight's dtype).
    ///
    /// - Fails, naming the input size, when `group_size` is not 32, 64 or 128 or does not divide
    ///   `in`, or when `bits` is not 4 or 8.
    ///
    /// Given.
    pub fn quantize(
        weight: &Array,
        bias: Option<Array>,
        group_size: i32,
        bits: i32,
        kernel: Kernel,
    ) -> Result<Self> {
        check_bits(bits)?;
        let &[_, inputs] = weight.shape() else {
            return Err(Exception::custom(format!(
                "only a matrix [out, in] can be quantized, got shape {:?}",
                weight.shape()
            )));
        };
        if ![32, 64, 128].contains(&group_size) || inputs % group_size != 0 {
            return Err(Exception::custom(format!(
                "group size {group_size} does not fit {inputs} inputs: it must be 32, 64 or 128 and divide {inputs}"
            )));
        }
        let (weight, scales, biases) = ops::quantize(weight, group_size, bits)?;
        QuantizedLinear::new(weight, scales, biases, bias, group_size, bits, kernel)
    }
}

impl Linear for QuantizedLinear {
    /// `x`: `[..., in]` -> `[..., out]`, through the layer's [`Kernel`].
    ///
    /// Book: week 2, chapter 9 (quantized matmul), task 3.
    fn forward(&self, x: &Array) -> Result<Array> {
        let (w, scales, biases) = (&self.weight, &self.scales, &self.biases);
        let (group_size, bits) = (self.group_size, self.bits);
        let y = match self.kernel {
            Kernel::Mlx => ops::quantized_matmul(x, w, scales, biases, true, group_size, bits)?,
            Kernel::Course => quantized_matmul(x, w, scales, biases, group_size, bits, true)?,
        }; // [..., out]
        match &self.bias {
            Some(bias) => y.add(bias), // [..., out]
            None => Ok(y),
        }
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
