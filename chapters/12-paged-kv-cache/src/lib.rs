//! Week 3, chapter 12: a paged KV cache. Your code goes in `src/allocator.rs` (handing the
//! pool's blocks out and back, growing and rewinding a block table), `src/step_plan.rs` (where a
//! step's tokens go and where its keys are read from), `src/paged_attention.rs` (writing and
//! gathering one layer's pages) and `src/paged_forward.rs` (the model's forward pass over pages).
//! Given: `src/page_pool.rs` (the pool, its pages, its errors), `src/block_table.rs` (a
//! sequence's blocks), `src/paged_layer.rs` (the step plan's type, and one layer's pages as
//! chapter 8's `LayerCache`), `src/paged_sequence.rs` (one sequence generating over pages) and
//! `src/fused_paged_attention.rs` (decode attention straight from the pages in one CUDA kernel).
//! The tests are in `tests/paged_kv_cache/`. Book: book/src/week3-12-paged-kv-cache.md.
//!
//! With the `solution` feature each file you write is swapped for its reference twin in
//! `solutions/paged-kv-cache/src/` (same name, same public API); the given files stay as they are.

// The files you write. The stubs ignore their arguments until you fill them in; each file
// already imports what you need.
#[cfg_attr(
    feature = "solution",
    path = "../../../solutions/paged-kv-cache/src/allocator.rs"
)]
#[cfg_attr(
    not(feature = "solution"),
    allow(unused_variables, unused_imports, dead_code)
)]
mod allocator;
#[cfg_attr(
    feature = "solution",
    path = "../../../solutions/paged-kv-cache/src/paged_attention.rs"
)]
#[cfg_attr(
    not(feature = "solution"),
    allow(unused_variables, unused_imports, dead_code)
)]
mod paged_attention;
#[cfg_attr(
    feature = "solution",
    path = "../../../solutions/paged-kv-cache/src/paged_forward.rs"
)]
#[cfg_attr(
    not(feature = "solution"),
    allow(unused_variables, unused_imports, dead_code)
)]
mod paged_forward;
#[cfg_attr(
    feature = "solution",
    path = "../../../solutions/paged-kv-cache/src/step_plan.rs"
)]
#[cfg_attr(
    not(feature = "solution"),
    allow(unused_variables, unused_imports, dead_code)
)]
mod step_plan;

// Given.
mod block_table;
mod fused_paged_attention;
#[cfg_attr(not(feature = "solution"), allow(dead_code))]
mod page_pool;
mod paged_layer;
mod paged_sequence;

pub use mlx_custom_kernel::KernelError;
pub use {
    block_table::*, fused_paged_attention::*, page_pool::*, paged_forward::*, paged_layer::*,
    paged_sequence::*,
};
// What the tests and later chapters use alongside the pages, from the chapters it builds on.
pub use {
    kv_cache::{
        generate, greedy, GenerationOptions, Kernels, KvCache, LayerCache, Model, Tokenizer,
    },
    rope::Offset,
};
