//! Chapter 9 tests. Run them with `cargo xtask test quantized-matmul` (add `--task N` for one
//! task). Dequantizing and multiplying are compared with MLX's own `dequantize` and
//! `quantized_matmul`; models with HF transformers' references (models/fixtures/) and with the
//! float32 conversion of the same GGUF, never with our own output.

mod harness;
mod task_1_dequantize;
mod task_2_quantized_matmul;
mod task_3_quantized_linear;
mod task_4_loading;
