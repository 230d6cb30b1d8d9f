//! Making each linear layer as the week-2 model loads: quantized as stored in an MLX-quantized
//! directory, quantized from float weights, or dense. The loader's settings are in
//! `src/quantization.rs`.

use crate::{QuantizedLinear, QuantizedLoader, StoredQuantization};
use kv_cache::{DenseLinear, Linear, LinearLoader, LoadError, Tensors};
use mlx_rs::Dtype;

impl LinearLoader for QuantizedLoader {
    /// - A layer with `{name}.scales` among the tensors is stored quantized: a
    ///   [`QuantizedLinear`] from `{name}.weight` `[out, in * bits / 32]`, `.scales` and `.biases`
    ///   `[out, in / group_size]`, and `.bias` `[out]` when present, with the bits and group size
    ///   of [`QuantizedLoader::stored_quantization`]. Checkpoints store scales and biases in
    ///   float16: cast them to float32, the model's dtype (exact; float16 ones would round every
    ///   dequantized weight, and turn the activations into float16).
    /// - Any other layer is float, `{name}.weight` `[out, in]` (and `.bias`): quantized with
    ///   [`QuantizedLinear::quantize`] when the target is not `Quantization::None`, else a
    ///   `DenseLinear`.
    /// - Errors: a missing or misshapen tensor as `Tensors::take` reports it; a quantization
    ///   that does not fit is `LoadError::Quantization` naming the layer, its input size and,
    ///   when quantizing, the `--quant-group-size` flag (an MLX error's text is `error.what()`).
    ///
    /// Book: week 2, chapter 9 (quantized matmul), task 4.
    fn load(
        &self,
        name: &str,
        out_features: i32,
        in_features: i32,
        tensors: &mut Tensors,
    ) -> Result<Box<dyn Linear>, LoadError> {
        todo!("chapter 9, task 4: quantized as stored (it has .scales), quantized now (a target), or dense")
    }
}
