//! Task 4: the model's forward pass over pages, and generation with it.

use crate::harness::{load_model, pool_with_holes, SMOLLM2, TINY_LOGITS};
use mlx_rs::{ops, ops::indexing::IndexOp, Array};
use paged_kv_cache::{
    forward_paged, generate, greedy, BlockTable, GenerationOptions, Kernels, PagePool, PagedError,
    PagedSequence, PoolError, Tokenizer,
};
use rstest::rstest;
use std::path::Path;
use test_support::{
    assert_allclose, expect_ok as ok, fetched_model_dir, fixture_path, load_fixture,
    token_ids as ids,
};

fn forward(
    model: &paged_kv_cache::Model,
    pool: &mut PagePool,
    tables: &mut [&mut BlockTable],
    tokens: &Array,
) -> Array {
    ok(forward_paged(model, pool, tables, tokens), "forward_paged")
}

#[rstest]
#[case::seq1_prefill_1(1, 1)]
#[case::seq1_prefill_5(1, 5)]
#[case::seq2_prefill_3(2, 3)]
#[case::seq2_prefill_16(2, 16)]
fn task_4_prefill_then_decode_over_pages_matches_transformers(
    #[values("llama-tiny", "qwen2-tiny", "qwen3-tiny")] model_name: &str,
    #[values(Kernels::Course, Kernels::Fused)] kernels: Kernels,
    #[case] sequence: usize,
    #[case] prefill: i32,
) {
    let model = load_model(&fixture_path(model_name)).with_kernels(kernels);
    let layers = model.config().num_hidden_layers as usize;
    let reference = load_fixture(&format!("{model_name}/reference.safetensors"));
    let tokens = reference[&format!("seq{sequence}.tokens")]
        .expand_dims(0)
        .unwrap(); // [1, L]
    let length = tokens.shape()[1];
    let mut pool = pool_with_holes(layers, 4, sequence as u64);
    let mut table = BlockTable::new();
    let mut logits = vec![forward(
        &model,
        &mut pool,
        &mut [&mut table],
        &tokens.index((.., ..prefill)),
    )];
    for position in prefill..length {
        logits.push(forward(
            &model,
            &mut pool,
            &mut [&mut table],
            &tokens.index((.., position..position + 1)),
        ));
    }
    let logits = ok(ops::concatenate(&logits, 1), "ops::concatenate"); // [1, L, V]
    assert_allclose(
        &logits.index(0),
        &reference[&format!("seq{sequence}.logits")],
        TINY_LOGITS,
        &format!("{model_name} logits of seq{sequence} over pages ({kernels:?} kernels, prefill {prefill}, then one token per step)"),
    );
    assert_eq!(table.len(), length as usize, "the table counts every token");
}

/// Two sequences prefilled alone to different lengths, then decoded together one token per
/// step: rows at different positions, with padding the mask must hide.
#[rstest]
fn task_4_a_batch_at_different_positions_matches_transformers(
    #[values("llama-tiny", "qwen2-tiny", "qwen3-tiny")] model_name: &str,
    #[values(Kernels::Course, Kernels::Fused)] kernels: Kernels,
) {
    let model = load_model(&fixture_path(model_name)).with_kernels(kernels);
    let layers = model.config().num_hidden_layers as usize;
    let reference = load_fixture(&format!("{model_name}/reference.safetensors"));
    let (short, long) = (&reference["seq1.tokens"], &reference["seq2.tokens"]); // 7 and 16 tokens
    let mut pool = pool_with_holes(layers, 4, 9);
    let (mut first, mut second) = (BlockTable::new(), BlockTable::new());
    let (short_start, long_start) = (3, 12);
    forward(
        &model,
        &mut pool,
        &mut [&mut first],
        &short.index(..short_start).expand_dims(0).unwrap(),
    );
    forward(
        &model,
        &mut pool,
        &mut [&mut second],
        &long.index(..long_start).expand_dims(0).unwrap(),
    );
    for step in 0..4 {
        let (a, b) = (short_start + step, long_start + step);
        let tokens = ok(
            ops::stack(&[short.index(a..a + 1), long.index(b..b + 1)], 0),
            "ops::stack",
        ); // [2, 1]
        let logits = forward(&model, &mut pool, &mut [&mut first, &mut second], &tokens);
        for (row, (name, position)) in [("seq1", a), ("seq2", b)].into_iter().enumerate() {
            assert_allclose(
                &logits.index((row as i32, 0)),
                &reference[&format!("{name}.logits")].index(position),
                TINY_LOGITS,
                &format!("{model_name} ({kernels:?} kernels): batch row {row} ({name}) at position {position}"),
            );
        }
    }
}

#[test]
fn task_4_a_step_the_pool_cannot_hold_changes_no_table() {
    let model = load_model(&fixture_path("llama-tiny"));
    let layers = model.config().num_hidden_layers as usize;
    let reference = load_fixture("llama-tiny/reference.safetensors");
    let tokens = reference["seq2.tokens"].expand_dims(0).unwrap(); // [1, 16]
    let mut pool = PagePool::new(layers, 2);
    let (mut full, mut other) = (BlockTable::new(), BlockTable::new());
    forward(&model, &mut pool, &mut [&mut full], &tokens); // one full block
    forward(
        &model,
        &mut pool,
        &mut [&mut other],
        &tokens.index((.., ..10)),
    ); // the last block
    let (full_before, other_before) = (full.clone(), other.clone());
    let next = Array::from_slice(&[5u32, 6], &[2, 1]);
    let error = forward_paged(&model, &mut pool, &mut [&mut full, &mut other], &next)
        .expect_err("a 17th token needs a third block in a pool of 2");
    assert!(
        matches!(
            error,
            PagedError::Pool(PoolError::Exhausted {
                requested: 1,
                free: 0,
                total: 2
            })
        ),
        "expected PoolError::Exhausted {{ requested: 1, free: 0, total: 2 }}, got {error:?}"
    );
    assert_eq!(
        (&full, &other),
        (&full_before, &other_before),
        "no table may change"
    );
    assert_eq!(pool.num_free(), 0);
    ok(other.release(&mut pool), "BlockTable::release");
    let logits = forward(
        &model,
        &mut pool,
        &mut [&mut full],
        &tokens.index((.., ..1)),
    );
    assert_eq!(
        logits.shape()[..2],
        [1, 1],
        "the step runs once a block is free"
    );
    assert_eq!(full.len(), 17);
}

#[test]
fn task_4_tokens_that_do_not_match_the_tables_are_an_error() {
    let model = load_model(&fixture_path("llama-tiny"));
    let mut pool = PagePool::new(model.config().num_hidden_layers as usize, 4);
    let mut table = BlockTable::new();
    let two_rows = Array::from_slice(&[1u32, 2], &[2, 1]);
    assert!(
        forward_paged(&model, &mut pool, &mut [&mut table], &two_rows).is_err(),
        "2 rows of tokens for 1 table"
    );
    let flat = Array::from_slice(&[1u32, 2], &[2]);
    assert!(
        forward_paged(&model, &mut pool, &mut [&mut table], &flat).is_err(),
        "tokens of shape [2]"
    );
    assert_eq!(pool.num_free(), 4, "a refused step takes no block");
}

fn options(max_new_tokens: usize) -> GenerationOptions {
    GenerationOptions {
        max_new_tokens,
        stop_strings: Vec::new(),
        ignore_eos: true,
    }
}

fn tokenizer_at(dir: &Path) -> Tokenizer {
    ok(Tokenizer::load(dir), "Tokenizer::load")
}

#[rstest]
fn task_4_greedy_generation_over_pages_matches_transformers(
    #[values("llama-tiny", "qwen2-tiny", "qwen3-tiny")] model_name: &str,
    #[values(0, 1, 2)] sequence: usize,
) {
    let model = load_model(&fixture_path(model_name));
    let tokenizer = tokenizer_at(&fixture_path(model_name));
    let reference = load_fixture(&format!("{model_name}/reference.safetensors"));
    let prompt = ids(&reference[&format!("seq{sequence}.tokens")]);
    let expected = ids(&reference[&format!("seq{sequence}.greedy_continuation")]);
    let mut paged = PagedSequence::new(&model, 4);
    let generation = ok(
        generate(
            &mut paged,
            &tokenizer,
            &prompt,
            &options(expected.len()),
            &mut greedy,
            &mut |_| {},
        ),
        "generate over pages",
    );
    assert_eq!(
        generation.tokens, expected,
        "{model_name}, seq{sequence}: greedy continuation over pages"
    );
    let held = prompt.len() + expected.len() - 1;
    assert_eq!(
        paged.table().len(),
        held,
        "the table holds the prompt and every token but the last"
    );
    assert_eq!(
        paged.pool().num_used(),
        held.div_ceil(16),
        "the sequence holds just the blocks it needs"
    );
}

/// Prompt 0: where the reference suppressed EOS; prompt 3: the chat prompt, 39 tokens (3 blocks).
#[rstest]
#[case::capital(0)]
#[case::chat(3)]
fn task_4_smollm2_greedy_generation_over_pages_matches_transformers(#[case] prompt: usize) {
    let Some(dir) = fetched_model_dir(SMOLLM2) else {
        return;
    };
    let (model, tokenizer) = (load_model(&dir), tokenizer_at(&dir));
    let reference = load_fixture("smollm2/reference.safetensors");
    let tokens = ids(&reference[&format!("prompt{prompt}.tokens")]);
    let expected = ids(&reference[&format!("prompt{prompt}.greedy_continuation")]);
    let generation = ok(
        generate(
            &mut PagedSequence::new(&model, 8),
            &tokenizer,
            &tokens,
            &options(expected.len()),
            &mut greedy,
            &mut |_| {},
        ),
        "generate over pages",
    );
    assert_eq!(
        generation.tokens, expected,
        "SmolLM2 prompt {prompt}: greedy continuation over pages"
    );
}
