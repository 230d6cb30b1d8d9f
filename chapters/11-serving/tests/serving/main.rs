//! Chapter 11 tests. Run them with `cargo xtask test serving` (add `--task N` for one task).
//! Every test starts an engine thread on the tiny Llama of `models/fixtures/llama-tiny` and sends
//! HTTP requests to `router(state)` in-process (no port). Greedy texts are compared with HF
//! transformers' greedy continuations (`reference.safetensors`), decoded by the tokenizer.

mod harness;
mod task_1_submit;
mod task_2_token;
mod task_3_completions;
mod task_3_tools;
mod task_4_logprobs;
mod task_4_openai_stream;
mod task_5_api_error;
