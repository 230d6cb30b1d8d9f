//! Chapter 14 tests. Run them with `cargo xtask test speculative-decoding` (add `--task N` for
//! one task). Prompt lookup is checked against cases worked out by hand; greedy verification
//! against MLX's argmax and HF transformers' greedy continuations (models/fixtures/); the
//! rejection rule against the target distribution it must reproduce, with a chi-square bound
//! that wrong rules are shown to fail; the draft model against chapter 8's cache generating alone
//! and the sampler's distribution over chapter 8's logits; speculative generation token for token
//! against transformers and chapter 8's plain greedy decoding. Never against the solution's own
//! output.

mod harness;
mod task_1_prompt_lookup;
mod task_2_verify_greedy;
mod task_3_rejection;
mod task_4_model_drafter;
mod task_5_batched;
mod task_5_speculative_generate;
