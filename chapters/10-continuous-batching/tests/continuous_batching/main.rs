//! Chapter 10 tests. Run them with `cargo xtask test continuous-batching` (add `--task N` for one
//! task). The batched cache is compared with MLX's own concatenation of what each row was given,
//! and its masks with matrices written out by hand; logits and generated tokens with HF
//! transformers' (models/fixtures/) or, for prompts transformers did not run, with chapter 8's
//! generation of each request alone. Never with the batch's own output.

mod harness;
mod task_1_add_and_remove;
mod task_2_layer_cache;
mod task_3_prefill;
mod task_4_decode;
mod task_4_logprobs;
mod task_5_cancel;
