//! Chapter 13 tests. Run them with `cargo xtask test prefix-cache` (add `--task N` for one
//! task). Hashes and references are checked against the rules written out in the tests; copied
//! blocks against MLX's own reading of the originals; the scheduler's output token for token
//! against HF transformers' greedy continuations (models/fixtures/) and, for prompts transformers
//! did not run, against chapter 8's dense cache generating each request alone.

mod harness;
mod task_1_sharing;
mod task_2_references;
mod task_3_copy_on_write;
mod task_4_paged_scheduler;
