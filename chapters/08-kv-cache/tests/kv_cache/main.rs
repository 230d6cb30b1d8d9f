//! Chapter 8 tests. Run them with `cargo xtask test kv-cache` (add `--task N` for one task).
//! The cache is compared with MLX's own concatenation of everything it was given; attention
//! outputs, logits and continuations with HF transformers' (models/fixtures/), never with our own
//! output.

mod harness;
mod task_1_update_and_fetch;
mod task_2_truncate_and_nbytes;
mod task_3_cached_attention;
mod task_4_model_forward;
mod task_5_next_token_logits;
// The given Llama 3 RoPE scaling, against NumPy: not one of your tasks, so it runs with the
// solutions (check-solutions requires every test to fail against the stubs).
#[cfg(feature = "solution")]
mod rope_scaling;
