//! Chapter 7 tests. Run them with `cargo xtask test sampling` (add `--task N` for one task).
//! Expected kept tokens and logits are worked out by hand; the sampler's frequencies are
//! compared with the filtered distribution computed here, in f64, from the definitions.

mod harness;
mod task_1_temperature;
mod task_2_top_k;
mod task_3_top_p;
mod task_4_min_p;
mod task_5_repetition_penalty;
mod task_6_sampler;
