//! Task 3: writing one layer's pages and gathering a batch's keys back from them.

use crate::harness::{pool_with_holes, EXACT};
use mlx_rs::{
    fast::{self, ScaledDotProductAttentionMask},
    ops,
    ops::indexing::IndexOp,
    Array, Dtype,
};
use paged_kv_cache::{BlockTable, KvCache, LayerCache, PagePool, PagedLayer, StepPlan};
use rstest::rstest;
use test_support::{assert_allclose, expect_ok as ok, random_array, Tolerance};

/// One step of a layer: new tokens for some of the sequences.
struct Step {
    rows: Vec<usize>,
    new_tokens: usize,
}

fn step(rows: &[usize], new_tokens: usize) -> Step {
    Step {
        rows: rows.to_vec(),
        new_tokens,
    }
}

/// Each sequence's prompt alone (lengths differ), then decoding steps of every row together.
fn prompts_then_decoding(prompts: &[usize], decode_steps: usize) -> Vec<Step> {
    let all: Vec<usize> = (0..prompts.len()).collect();
    let mut steps: Vec<Step> = prompts
        .iter()
        .enumerate()
        .map(|(row, &len)| step(&[row], len))
        .collect();
    steps.extend((0..decode_steps).map(|_| step(&all, 1)));
    steps
}

/// Runs `steps` through one layer's pages, and through one chapter-8 cache per sequence, with
/// the same seeded keys and values; after every step, compares what attention would read.
fn run_steps(
    sequences: usize,
    steps: &[Step],
    [heads, head_dim]: [i32; 2],
    dtype: Dtype,
    seed: u64,
    mut check: impl FnMut(&StepPlan, &[usize], (&Array, &Array), &mut [KvCache], (&Array, &Array)),
) {
    let mut pool = pool_with_holes(1, 16, seed);
    let mut tables = vec![BlockTable::new(); sequences];
    let mut dense: Vec<KvCache> = (0..sequences).map(|_| KvCache::new()).collect();
    for (index, Step { rows, new_tokens }) in steps.iter().enumerate() {
        let shape = [rows.len() as i32, heads, *new_tokens as i32, head_dim];
        let keys = random_array(&shape, dtype, seed * 1000 + 2 * index as u64);
        let values = random_array(&shape, dtype, seed * 1000 + 2 * index as u64 + 1);
        for &row in rows {
            ok(
                tables[row].reserve(&mut pool, *new_tokens),
                "BlockTable::reserve",
            );
        }
        let plan = {
            let chosen: Vec<&BlockTable> = rows.iter().map(|&row| &tables[row]).collect();
            ok(StepPlan::new(&chosen, *new_tokens), "StepPlan::new")
        };
        let mut layer = PagedLayer {
            pages: &mut pool.layers_mut()[0],
            plan: &plan,
        };
        let paged = ok(
            layer.update_and_fetch(&keys, &values),
            "PagedLayer::update_and_fetch (your write, then gather)",
        );
        for (i, &row) in rows.iter().enumerate() {
            let i = i as i32;
            let one = |array: &Array| array.index(i..i + 1);
            ok(
                dense[row].update_and_fetch(&one(&keys), &one(&values)),
                "KvCache::update_and_fetch",
            );
            tables[row].advance(*new_tokens);
        }
        check(
            &plan,
            rows,
            (&paged.0, &paged.1),
            &mut dense,
            (&keys, &values),
        );
    }
}

#[rstest]
#[case::one_sequence_f32(1, &[5, 1, 1, 20], [2, 8], Dtype::Float32)]
#[case::three_sequences_f16(3, &[], [2, 16], Dtype::Float16)]
#[case::two_sequences_bf16_whole_blocks(2, &[], [4, 8], Dtype::Bfloat16)]
fn task_3_gather_returns_every_key_written(
    #[case] sequences: usize,
    #[case] one_sequence_steps: &[usize],
    #[case] heads_and_dim: [i32; 2],
    #[case] dtype: Dtype,
    #[values(1, 2)] seed: u64,
) {
    let steps: Vec<Step> = match sequences {
        1 => one_sequence_steps
            .iter()
            .map(|&len| step(&[0], len))
            .collect(),
        3 => prompts_then_decoding(&[7, 1, 18], 17),
        _ => prompts_then_decoding(&[16, 32], 3),
    };
    run_steps(
        sequences,
        &steps,
        heads_and_dim,
        dtype,
        seed,
        |plan, rows, paged, dense, _| {
            let (keys, values) = paged;
            assert_eq!(keys.dtype(), dtype, "the pages keep the keys' dtype");
            for (i, &row) in rows.iter().enumerate() {
                let (dense_keys, dense_values) = dense[row]
                    .contents()
                    .expect("chapter 8's cache holds the row");
                let length = dense[row].offset();
                let i = i as i32;
                // Chapter 8's cache holds exactly what was written; the row's positions past its
                // length are padding.
                assert_allclose(
                    &keys.index((i..i + 1, .., ..length, ..)),
                    &dense_keys,
                    EXACT,
                    &format!(
                        "gathered keys of row {row} ({length} positions) vs chapter 8's cache"
                    ),
                );
                assert_allclose(
                    &values.index((i..i + 1, .., ..length, ..)),
                    &dense_values,
                    EXACT,
                    &format!("gathered values of row {row} vs chapter 8's cache"),
                );
            }
            assert_eq!(plan.positions().len(), rows.len());
        },
    );
}

/// The reference: each row alone, over its dense keys, through MLX's fused attention with the
/// causal rule.
fn dense_attention(queries: &Array, keys: &Array, values: &Array, scale: f32) -> Array {
    let causal = queries.shape()[2] > 1;
    let mask = causal.then_some(ScaledDotProductAttentionMask::Causal);
    ok(
        fast::scaled_dot_product_attention(queries, keys, values, scale, mask, None),
        "fast::scaled_dot_product_attention",
    )
}

#[rstest]
#[case::decoding_rows_of_three_lengths(&[7, 1, 18], 1, 4)]
#[case::chunks_of_three(&[5, 16], 3, 2)]
fn task_3_attention_over_pages_equals_dense_attention(
    #[case] prompts: &[usize],
    #[case] chunk: usize,
    #[case] decode_steps: usize,
    #[values(1, 2)] seed: u64,
) {
    let [query_heads, kv_heads, head_dim] = [4, 2, 16];
    let scale = 1.0 / (head_dim as f32).sqrt();
    let all: Vec<usize> = (0..prompts.len()).collect();
    let mut steps = prompts_then_decoding(prompts, 0);
    steps.extend((0..decode_steps).map(|_| step(&all, chunk)));
    let mut query_seed = 7_000 + seed;
    run_steps(
        prompts.len(),
        &steps,
        [kv_heads, head_dim],
        Dtype::Float32,
        seed,
        |plan, rows, paged, dense, _| {
            let (keys, values) = paged;
            let new_tokens = plan.write_slots().shape()[0] / rows.len() as i32;
            query_seed += 1;
            let queries = random_array(
                &[rows.len() as i32, query_heads, new_tokens, head_dim],
                Dtype::Float32,
                query_seed,
            );
            let mask = plan
                .mask()
                .map(ScaledDotProductAttentionMask::Array)
                .or_else(|| (new_tokens > 1).then_some(ScaledDotProductAttentionMask::Causal));
            let got = ok(
                fast::scaled_dot_product_attention(&queries, keys, values, scale, mask, None),
                "attention over the gathered pages with the plan's mask",
            );
            for (i, &row) in rows.iter().enumerate() {
                let (dense_keys, dense_values) = dense[row]
                    .contents()
                    .expect("chapter 8's cache holds the row");
                let i = i as i32;
                let expected =
                    dense_attention(&queries.index(i..i + 1), &dense_keys, &dense_values, scale);
                assert_allclose(
                &got.index(i..i + 1),
                &expected,
                Tolerance::F32,
                &format!("row {row}'s attention over pages vs over its dense keys (step of {new_tokens} tokens)"),
            );
            }
        },
    );
}

#[test]
fn task_3_a_freed_sequences_pages_serve_the_next_one() {
    let [heads, head_dim] = [2, 8];
    let mut pool = PagePool::new(1, 4);
    // Writes `tokens` seeded keys (and values) for each of `tables`, one step.
    let step = |pool: &mut PagePool, tables: &mut [&mut BlockTable], tokens: i32, seed: u64| {
        let shape = [tables.len() as i32, heads, tokens, head_dim];
        let keys = random_array(&shape, Dtype::Float32, seed);
        let values = random_array(&shape, Dtype::Float32, seed + 1);
        for table in tables.iter_mut() {
            ok(table.reserve(pool, tokens as usize), "BlockTable::reserve");
        }
        let rows: Vec<&BlockTable> = tables.iter().map(|table| &**table).collect();
        let plan = ok(StepPlan::new(&rows, tokens as usize), "StepPlan::new");
        let pages = &mut pool.layers_mut()[0];
        ok(pages.write(&keys, &values, &plan), "LayerPages::write");
        let gathered = ok(pages.gather(&plan), "LayerPages::gather");
        for table in tables.iter_mut() {
            table.advance(tokens as usize);
        }
        (keys, gathered)
    };
    let (mut first, mut second, mut third) =
        (BlockTable::new(), BlockTable::new(), BlockTable::new());
    step(&mut pool, &mut [&mut first], 30, 10); // 2 blocks
    let (second_keys, _) = step(&mut pool, &mut [&mut second], 20, 20); // 2 blocks: the pool is full
    ok(first.release(&mut pool), "BlockTable::release");
    let (third_keys, _) = step(&mut pool, &mut [&mut third], 25, 30); // the first's blocks again
    let (last_keys, (gathered, _)) = step(&mut pool, &mut [&mut second, &mut third], 1, 40);
    let expected = [
        ops::concatenate(&[second_keys, last_keys.index(0..1)], 2),
        ops::concatenate(&[third_keys, last_keys.index(1..2)], 2),
    ];
    for (row, (expected, what)) in expected
        .into_iter()
        .zip([
            "the sequence that kept its blocks",
            "the sequence on the freed blocks",
        ])
        .enumerate()
    {
        let expected = ok(expected, "ops::concatenate");
        let length = expected.shape()[2];
        let row = row as i32;
        assert_allclose(
            &gathered.index((row..row + 1, .., ..length, ..)),
            &expected,
            EXACT,
            &format!("keys of {what} after the first sequence's blocks were reused"),
        );
    }
}

#[test]
fn task_3_pages_refuse_keys_of_another_shape_and_a_gather_before_any_write() {
    let mut pool = PagePool::new(1, 2);
    let mut table = BlockTable::new();
    ok(table.reserve(&mut pool, 1), "BlockTable::reserve");
    let plan = ok(StepPlan::new(&[&table], 1), "StepPlan::new");
    let pages = &mut pool.layers_mut()[0];
    assert!(
        pages.gather(&plan).is_err(),
        "gather before any write should fail"
    );
    let keys = random_array(&[1, 2, 1, 8], Dtype::Float32, 1);
    ok(pages.write(&keys, &keys, &plan), "the first write");
    let other = random_array(&[1, 2, 1, 4], Dtype::Float32, 2);
    assert!(
        pages.write(&other, &other, &plan).is_err(),
        "a head size of 4 after 8 should fail"
    );
    let flat = random_array(&[2, 8], Dtype::Float32, 3);
    assert!(
        pages.write(&flat, &flat, &plan).is_err(),
        "keys of shape [2, 8] should fail"
    );
}
