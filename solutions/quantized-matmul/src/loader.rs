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
        let bias = tensors.take_optional(&format!("{name}.bias"), Some(&[out_features]))?; // [out]
        if tensors.contains(&format!("{name}.scales")) {
            let Some(StoredQuantization { bits, group_size }) = self.stored_quantization(name)?
            else {
                return Err(LoadError::Quantization(format!(
                    "{name} is stored quantized ({name}.scales) but config.json has no \"quantization\""
                )));
            };
            let packed = [out_features, in_features * bits / 32]; // uint32 words
            let groups = [out_features, in_features / group_size];
            let weight = tensors.take(&format!("{name}.weight"), Some(&packed))?;
            // float16 in the checkpoint; float32 is exact and keeps the model in float32.
            let mut float32 = |part: &str| {
                tensors
                    .take(&format!("{name}.{part}"), Some(&groups))? // [out, in / G]
                    .as_dtype(Dtype::Float32)
                    .map_err(LoadError::from)
            };
            let (scales, biases) = (float32("scales")?, float32("biases")?);
            let layer =
                QuantizedLinear::new(weight, scales, biases, bias, group_size, bits, self.kernel)
                    .map_err(|error| LoadError::Quantization(format!("{name}: {}", error.what())))?;
            return Ok(Box::new(layer));
        }
        let weight = tensors.take(
            &format!("{name}.weight"),
            Some(&[out_features, in_features]),
        )?; // [out, in]
        let Some(bits) = self.target.bits() else {
            return Ok(Box::new(DenseLinear::new(weight, bias)));
        };
        let layer = QuantizedLinear::quantize(&weight, bias, self.group_size, bits, self.kernel)
            .map_err(|error| {
                LoadError::Quantization(format!(
                    "cannot quantize {name} ({in_features} inputs) to {bits} bits: {}; choose another --quant-group-size",
                    error.what()
                ))
            })?;
        Ok(Box::new(layer))
    }
}
