//! Chapter 12 tests. Run them with `cargo xtask test paged-kv-cache` (add `--task N` for one
//! task). Blocks are checked against the rules written out in the tests; what the pages give back
//! against MLX's own concatenation of what they were given and chapter 8's dense cache; attention
//! over pages against MLX's fused attention over dense keys; logits and generated tokens against
//! HF transformers' (models/fixtures/). Never against the pages' own output.

mod harness;
mod task_1_allocator;
mod task_2_step_plan;
mod task_3_fused_paged_attention;
mod task_3_paged_attention;
mod task_4_paged_forward;
