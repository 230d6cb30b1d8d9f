//! Chapter 15 tests. Run them with `cargo xtask test constrained-decoding` (add `--task N` for
//! one task). Unpacked masks are checked bit by bit against the words they come from and against
//! llguidance's own masks; constraints against a matcher the tests build straight from the
//! library; generated JSON by parsing it and validating it with the `jsonschema` crate; the
//! unconstrained rows of a batch against chapter 7's sampler on the raw logits.

mod harness;
mod task_1_mask;
mod task_2_constraint;
mod task_3_generate;
mod task_4_batch;
