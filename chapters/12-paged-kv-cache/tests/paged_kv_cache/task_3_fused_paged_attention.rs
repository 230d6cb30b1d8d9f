//! Task 3, on the GPU (given kernel, so these run with the solutions): decode attention straight
//! from the pages in one CUDA kernel, against MLX's fused attention over each row's keys taken
//! out of the pages by hand. Without CUDA the kernel must say that it needs it, and the engine's
//! path (your gather, then MLX's attention) must match the same reference.
//!
//! Run on an NVIDIA GPU with MLX_ENABLE_TF32=0: MLX's reference then multiplies in float32.
#![cfg(feature = "solution")]

use crate::harness::{int_values, pool_with_holes, Seeded};
use mlx_custom_kernel::cuda_kernels_run_here;
use mlx_rs::{fast, ops, ops::indexing::IndexOp, Array, Dtype};
use paged_kv_cache::{
    fused_paged_attention, fused_paged_attention_requested, BlockTable, KernelError, KvCache,
    LayerCache, PagedAttentionKernel, PagedLayer, StepPlan,
};
use rstest::rstest;
use test_support::{assert_allclose, expect_ok as ok, random_array, Tolerance};

/// float32 against float32: the outputs are weighted means of N(0, 1) values, and summing in
/// another order moves them by ~1e-7 of the values' size, not of the mean's, which may be ~0.
const F32: Tolerance = Tolerance {
    rtol: 1e-5,
    atol: 1e-5,
};

/// The kernel accumulates in float32 and rounds once, at its output; the reference stays in
/// float32 from the same half-precision inputs. Rounding to nearest moves a value by at most
/// half a unit in its last place: 2^-8 of it in bfloat16 (8 significant bits), 2^-11 in float16
/// (11), with float32's slack on top.
fn tolerance(dtype: Dtype) -> Tolerance {
    match dtype {
        Dtype::Bfloat16 => Tolerance {
            rtol: 5e-3,
            atol: 1e-5,
        },
        Dtype::Float16 => Tolerance {
            rtol: 7e-4,
            atol: 1e-5,
        },
        _ => F32,
    }
}

/// Pages holding several rows' keys at seeded random blocks, with spare blocks between them.
struct Layout {
    key_pages: Array,   // [num_blocks * tokens_per_block, H_kv, D]
    value_pages: Array, // [num_blocks * tokens_per_block, H_kv, D]
    tables: Vec<Vec<i32>>,
    lens: Vec<i32>,
    tokens_per_block: i32,
}

impl Layout {
    fn new(
        lens: &[i32],
        tokens_per_block: i32,
        [kv_heads, head_dim]: [i32; 2],
        dtype: Dtype,
        seed: u64,
    ) -> Self {
        let blocks: Vec<usize> = lens
            .iter()
            .map(|&len| (len as usize).div_ceil(tokens_per_block as usize))
            .collect();
        let num_blocks = blocks.iter().sum::<usize>() + 3;
        let mut ids: Vec<i32> = (0..num_blocks as i32).collect();
        Seeded::new(seed).shuffle(&mut ids);
        let mut next = ids.into_iter();
        let tables = blocks
            .iter()
            .map(|&count| next.by_ref().take(count).collect())
            .collect();
        let shape = [num_blocks as i32 * tokens_per_block, kv_heads, head_dim];
        Layout {
            key_pages: random_array(&shape, dtype, seed * 10),
            value_pages: random_array(&shape, dtype, seed * 10 + 1),
            tables,
            lens: lens.to_vec(),
            tokens_per_block,
        }
    }

    /// `[B, max_blocks]` int32, short rows padded with block 0.
    fn block_tables(&self) -> Array {
        let width = self.tables.iter().map(Vec::len).max().unwrap_or(0);
        let padded: Vec<i32> = self
            .tables
            .iter()
            .flat_map(|table| {
                table
                    .iter()
                    .copied()
                    .chain(std::iter::repeat(0))
                    .take(width)
            })
            .collect();
        Array::from_slice(&padded, &[self.tables.len() as i32, width as i32])
    }

    /// The slots of row `row`'s tokens, in order.
    fn slots(&self, row: usize) -> Vec<i32> {
        let block = self.tokens_per_block;
        (0..self.lens[row])
            .map(|t| self.tables[row][(t / block) as usize] * block + t % block)
            .collect()
    }
}

/// MLX's fused attention of each row's query over its keys taken out of the pages, in float32.
fn reference(queries: &Array, layout: &Layout, scale: f32) -> Array {
    let as_f32 = |array: &Array| ok(array.as_dtype(Dtype::Float32), "as_dtype");
    let rows: Vec<Array> = (0..layout.lens.len())
        .map(|row| {
            let slots = layout.slots(row);
            let slots = Array::from_slice(&slots, &[slots.len() as i32]);
            // [S, H_kv, D] -> [1, H_kv, S, D]
            let dense = |pages: &Array| {
                ok(
                    as_f32(pages)
                        .take_axis(&slots, 0)
                        .and_then(|taken| taken.swap_axes(0, 1))
                        .and_then(|taken| taken.expand_dims(0)),
                    "taking a row's keys out of the pages",
                )
            };
            let query = as_f32(&queries.index(row as i32..row as i32 + 1)); // [1, H_q, 1, D]
            ok(
                fast::scaled_dot_product_attention(
                    &query,
                    dense(&layout.key_pages),
                    dense(&layout.value_pages),
                    scale,
                    None::<fast::ScaledDotProductAttentionMask>,
                    None,
                ),
                "fast::scaled_dot_product_attention",
            )
        })
        .collect();
    ok(ops::concatenate(&rows, 0), "concatenate") // [B, H_q, 1, D]
}

fn context_lens(lens: &[i32]) -> Array {
    Array::from_slice(lens, &[lens.len() as i32])
}

#[rstest]
#[case::one_token(&[1], 16, [4, 4, 64])]
#[case::smollm2_heads_lengths_across_blocks(&[1, 17, 40, 16], 16, [9, 3, 64])]
#[case::blocks_of_8_no_grouping(&[5, 33, 8], 8, [2, 2, 32])]
#[case::blocks_of_32_groups_of_4(&[100, 31, 64], 32, [8, 2, 128])]
#[case::long_and_short_one_kv_head(&[700, 3], 16, [4, 1, 64])]
fn task_3_fused_paged_attention_matches_sdpa_over_the_rows_keys(
    #[case] lens: &[i32],
    #[case] tokens_per_block: i32,
    #[case] heads_and_dim: [i32; 3],
    #[values(Dtype::Float32, Dtype::Bfloat16, Dtype::Float16)] dtype: Dtype,
) {
    let [query_heads, kv_heads, head_dim] = heads_and_dim;
    let seed = lens.iter().sum::<i32>() as u64 + tokens_per_block as u64;
    let layout = Layout::new(lens, tokens_per_block, [kv_heads, head_dim], dtype, seed);
    let queries = random_array(
        &[lens.len() as i32, query_heads, 1, head_dim],
        dtype,
        seed + 7,
    );
    let scale = 1.0 / (head_dim as f32).sqrt();
    let fused = fused_paged_attention(
        &queries,
        &layout.key_pages,
        &layout.value_pages,
        &layout.block_tables(),
        &context_lens(lens),
        tokens_per_block,
        scale,
    );
    // Built everywhere, so that a machine without CUDA checks the reference's shapes too.
    let expected = reference(&queries, &layout, scale);
    ok(expected.eval(), "the reference evaluates");
    assert_eq!(expected.shape(), queries.shape());
    if !ok(cuda_kernels_run_here(), "cuda_kernels_run_here") {
        let error = fused.expect_err("without CUDA the kernel cannot run");
        assert!(
            matches!(error, KernelError::CudaUnavailable | KernelError::NotOnGpu),
            "the error says CUDA is missing, got {error:?}"
        );
        return;
    }
    let fused = ok(fused, "fused_paged_attention");
    assert_eq!(fused.dtype(), dtype, "the output keeps the queries' dtype");
    assert_allclose(
        &fused,
        &expected,
        tolerance(dtype),
        &format!("fused paged attention ({dtype:?}, lengths {lens:?}, blocks of {tokens_per_block}, {query_heads}/{kv_heads} heads, D {head_dim}) vs MLX's sdpa"),
    );
}

#[test]
fn task_3_fused_paged_attention_names_what_it_cannot_take() {
    let layout = Layout::new(&[20, 3], 16, [2, 64], Dtype::Float32, 1);
    let queries = random_array(&[2, 4, 1, 64], Dtype::Float32, 2);
    let call = |queries: &Array, pages: &Array, tables: &Array, lens: &Array| {
        fused_paged_attention(queries, pages, pages, tables, lens, 16, 0.125)
            .expect_err("refused")
            .to_string()
    };
    let (tables, lens) = (layout.block_tables(), context_lens(&layout.lens));
    let cases = [
        (
            call(
                &random_array(&[2, 4, 2, 64], Dtype::Float32, 3),
                &layout.key_pages,
                &tables,
                &lens,
            ),
            "one new token per row",
        ),
        (
            call(
                &random_array(&[2, 4, 1, 48], Dtype::Float32, 3),
                &random_array(&[48, 2, 48], Dtype::Float32, 4),
                &tables,
                &lens,
            ),
            "the head dimension 48 is not a multiple of 32",
        ),
        (
            call(
                &random_array(&[2, 3, 1, 64], Dtype::Float32, 3),
                &layout.key_pages,
                &tables,
                &lens,
            ),
            "H_q a multiple of H_kv",
        ),
        (
            call(
                &queries,
                &ok(layout.key_pages.as_dtype(Dtype::Bfloat16), "as_dtype"),
                &tables,
                &lens,
            ),
            "pages are Bfloat16, queries Float32",
        ),
        (
            call(
                &queries,
                &layout.key_pages,
                &ok(tables.as_dtype(Dtype::Int64), "as_dtype"),
                &lens,
            ),
            "block tables must be [B = 2, max_blocks] int32",
        ),
        (
            call(&queries, &layout.key_pages, &tables, &context_lens(&[20])),
            "context lengths must be [B = 2] int32",
        ),
    ];
    for (error, expected) in cases {
        assert!(
            error.contains(expected),
            "{error:?} should say {expected:?}"
        );
    }
}

/// A decode step of the engine: prompts written one sequence at a time, then one token for
/// every row. The attention the layer returns (fused on CUDA, gathered elsewhere) must equal
/// MLX's attention over chapter 8's dense cache of each sequence.
#[rstest]
#[case::three_rows_grouped(&[5, 16, 23], [4, 2, 64], 1)]
#[case::one_row_one_token(&[1], [2, 1, 32], 2)]
fn task_3_decode_over_pages_is_fused_on_cuda_and_gathered_elsewhere(
    #[case] prompts: &[usize],
    #[case] heads_and_dim: [i32; 3],
    #[case] seed: u64,
) {
    let [query_heads, kv_heads, head_dim] = heads_and_dim;
    let dtype = Dtype::Float32;
    let mut pool = pool_with_holes(1, 16, seed);
    let mut tables = vec![BlockTable::new(); prompts.len()];
    let mut dense: Vec<KvCache> = prompts.iter().map(|_| KvCache::new()).collect();
    for (row, &length) in prompts.iter().enumerate() {
        let shape = [1, kv_heads, length as i32, head_dim];
        let (keys, values) = (
            random_array(&shape, dtype, seed * 100 + 2 * row as u64),
            random_array(&shape, dtype, seed * 100 + 2 * row as u64 + 1),
        );
        ok(
            tables[row].reserve(&mut pool, length),
            "BlockTable::reserve",
        );
        let plan = ok(StepPlan::new(&[&tables[row]], length), "StepPlan::new");
        let mut layer = PagedLayer {
            pages: &mut pool.layers_mut()[0],
            plan: &plan,
        };
        ok(
            layer.update_and_fetch(&keys, &values),
            "PagedLayer::update_and_fetch",
        );
        ok(
            dense[row].update_and_fetch(&keys, &values),
            "KvCache::update_and_fetch",
        );
        tables[row].advance(length);
    }

    let batch = prompts.len() as i32;
    let queries = random_array(&[batch, query_heads, 1, head_dim], dtype, seed * 100 + 50);
    let keys = random_array(&[batch, kv_heads, 1, head_dim], dtype, seed * 100 + 51);
    let values = random_array(&[batch, kv_heads, 1, head_dim], dtype, seed * 100 + 52);
    let scale = 1.0 / (head_dim as f32).sqrt();
    let expected: Vec<Array> = (0..batch)
        .map(|row| {
            let one = |array: &Array| array.index(row..row + 1);
            let (k, v) = ok(
                dense[row as usize].update_and_fetch(&one(&keys), &one(&values)),
                "KvCache::update_and_fetch",
            );
            ok(
                fast::scaled_dot_product_attention(
                    one(&queries),
                    &k,
                    &v,
                    scale,
                    None::<fast::ScaledDotProductAttentionMask>,
                    None,
                ),
                "fast::scaled_dot_product_attention",
            )
        })
        .collect();
    let expected = ok(ops::concatenate(&expected, 0), "concatenate"); // [B, H_q, 1, D]

    for table in &mut tables {
        ok(table.reserve(&mut pool, 1), "BlockTable::reserve");
    }
    let rows: Vec<&BlockTable> = tables.iter().collect();
    let plan = ok(StepPlan::new(&rows, 1), "StepPlan::new");
    let mut layer = PagedLayer {
        pages: &mut pool.layers_mut()[0],
        plan: &plan,
    };
    let on_cuda =
        ok(cuda_kernels_run_here(), "cuda_kernels_run_here") && fused_paged_attention_requested();
    let fused = ok(
        layer.attend_fused(&queries, &keys, &values, scale),
        "PagedLayer::attend_fused",
    );
    let got = match fused {
        Some(out) => {
            assert!(
                on_cuda,
                "the fused kernel only runs on a CUDA GPU, with TINY_LLM_PAGED_ATTENTION=fused"
            );
            out
        }
        None => {
            assert!(
                !on_cuda,
                "on a CUDA GPU with TINY_LLM_PAGED_ATTENTION=fused a decode step takes the fused kernel"
            );
            ok(
                layer.pages.write(&keys, &values, &plan),
                "LayerPages::write",
            );
            ok(
                layer
                    .pages
                    .decode_attention(&queries, &plan, scale, PagedAttentionKernel::Gather),
                "LayerPages::decode_attention (gather)",
            )
        }
    };
    let path = if on_cuda { "fused" } else { "gathered" };
    assert_allclose(
        &got,
        &expected,
        F32,
        &format!("{path} decode attention over pages vs MLX's sdpa over chapter 8's cache"),
    );
    if on_cuda {
        let gathered = ok(
            layer
                .pages
                .decode_attention(&queries, &plan, scale, PagedAttentionKernel::Gather),
            "LayerPages::decode_attention (gather)",
        );
        assert_allclose(
            &gathered,
            &expected,
            F32,
            "gathered decode attention over pages vs MLX's sdpa",
        );
    }
}

/// What the engine hands the kernel at a decode step: each row's blocks, read off the plan's
/// slots, and each row's length with its new token; int32, as the kernel reads them.
#[test]
fn task_3_a_decode_plan_gives_the_kernel_each_rows_blocks_and_length() {
    let mut pool = pool_with_holes(1, 16, 3);
    let mut tables = vec![BlockTable::new(); 3];
    for (table, length) in tables.iter_mut().zip([40, 1, 16]) {
        ok(table.reserve(&mut pool, length), "BlockTable::reserve");
        table.advance(length);
        ok(table.reserve(&mut pool, 1), "BlockTable::reserve");
    }
    let rows: Vec<&BlockTable> = tables.iter().collect();
    let plan = ok(StepPlan::new(&rows, 1), "StepPlan::new");
    let block_tables = ok(plan.block_tables(), "StepPlan::block_tables");
    assert_eq!(block_tables.dtype(), Dtype::Int32);
    // 41 positions at most: 3 blocks a row; a shorter row's missing blocks read as block 0.
    let expected: Vec<i32> = tables
        .iter()
        .flat_map(|table| {
            let blocks = table.blocks().iter().map(|&block| block as i32);
            blocks.chain(std::iter::repeat(0)).take(3)
        })
        .collect();
    assert_eq!(block_tables.shape(), [3, 3]);
    // The kernel's launch copies it row-major (MLX may hand back a strided view).
    let block_tables = ok(block_tables.contiguous(), "contiguous");
    assert_eq!(int_values(&block_tables), expected);
    let lens = plan.context_lens(1);
    assert_eq!(lens.dtype(), Dtype::Int32);
    assert_eq!(int_values(&lens), [41, 2, 17]);
}
