//! What a quantized linear layer holds: its packed weight with the scales and biases of its
//! groups, made from tensors already quantized or by quantizing a float weight. Given: your
//! `Linear` implementation for it is in `src/quantized_linear.rs`.

use crate::Kernel;
use mlx_rs::{
    error::{Exception, Result},
    ops, Array,
};

/// `y = x W^T + b` with `W` `[out, in]` quantized in groups along `in`.
///
/// Given; what it does as a [`Linear`] layer is yours (book: week 2, chapter 9 (quantized
/// matmul), task 3).
pub struct QuantizedLinear {
    /// `[out, in * bits / 32]` uint32.
    pub(crate) weight: Array,
    /// `[out, in / group_size]`.
    pub(crate) scales: Array,
    /// `[out, in / group_size]`.
    pub(crate) biases: Array,
    /// `[out]`.
    pub(crate) bias: Option<Array>,
    pub(crate) group_size: i32,
    pub(crate) bits: i32,
    pub(crate) kernel: Kernel,
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

    /// `x W^T` `[..., in]` -> `[..., out]` with MLX's fused `quantized_matmul` ([`Kernel::Mlx`]).
    pub(crate) fn mlx_matmul(&self, x: &Array) -> Result<Array> {
        let (w, scales, biases) = (&self.weight, &self.scales, &self.biases);
        ops::quantized_matmul(x, w, scales, biases, true, self.group_size, self.bits)
    }

    /// `y + b`, when the layer has a bias.
    pub(crate) fn add_bias(&self, y: Array) -> Result<Array> {
        match &self.bias {
            Some(bias) => y.add(bias), // [..., out]
            None => Ok(y),
        }
    }
}
