//! Task 1: KvCache::update_and_fetch

use crate::harness::{concatenate, random_kv, update, EXACT};
use kv_cache::{KvCache, STEP};
use mlx_rs::Dtype;
use rstest::rstest;
use test_support::{assert_allclose, expect_ok as ok};

#[rstest]
#[case::single_sequence_f32([1, 2, 8], Dtype::Float32, &[5, 1, 1, 3])]
#[case::batch_f16_across_a_step([2, 3, 16], Dtype::Float16, &[7, 1, 250, 1, 2])]
#[case::batch_bf16_whole_steps([3, 1, 4], Dtype::Bfloat16, &[256, 1, 255, 1, 300])]
fn task_1_update_and_fetch_returns_every_position_so_far(
    #[case] shape: [i32; 3],
    #[case] dtype: Dtype,
    #[case] lengths: &[i32],
) {
    let [batch, heads, head_dim] = shape;
    let mut cache = KvCache::new();
    let (mut all_keys, mut all_values) = (Vec::new(), Vec::new());
    let mut offset = 0;
    for (step, &length) in lengths.iter().enumerate() {
        let (keys, values) = random_kv([batch, heads, length, head_dim], dtype, step as u64);
        all_keys.push(keys.clone());
        all_values.push(values.clone());
        offset += length;
        let (got_keys, got_values) = update(&mut cache, &keys, &values);
        let what = |name: &str| {
            format!("{name} after update {step} ({length} tokens, lengths {lengths:?}, {dtype:?})")
        };
        assert_eq!(got_keys.dtype(), dtype, "{}: dtype", what("keys"));
        assert_allclose(&got_keys, &concatenate(&all_keys, 2), EXACT, &what("keys"));
        assert_allclose(
            &got_values,
            &concatenate(&all_values, 2),
            EXACT,
            &what("values"),
        );
        assert_eq!(cache.offset(), offset, "{}: offset", what("the cache"));
        let capacity = cache.capacity();
        assert!(
            capacity >= offset && capacity % STEP == 0,
            "{}: capacity {capacity} should be a multiple of STEP = {STEP} and hold all {offset} positions",
            what("the cache")
        );
    }
}

#[rstest]
#[case::one_token(&[1], 256)]
#[case::a_whole_step(&[256], 256)]
#[case::one_past_a_step(&[257], 512)]
#[case::filling_a_step_in_parts(&[200, 56], 256)]
#[case::then_one_more(&[200, 56, 1], 512)]
fn task_1_capacity_grows_in_whole_steps(#[case] lengths: &[i32], #[case] expected: i32) {
    let mut cache = KvCache::new();
    for (step, &length) in lengths.iter().enumerate() {
        let (keys, values) = random_kv([1, 2, length, 4], Dtype::Float32, step as u64);
        update(&mut cache, &keys, &values);
    }
    assert_eq!(
        cache.capacity(),
        expected,
        "capacity after updates of {lengths:?} tokens (STEP = {STEP})"
    );
}

#[test]
fn task_1_single_tokens_are_written_in_place() {
    // Decoding: one token per step. The storage grows once per STEP tokens, not once per token.
    let mut cache = KvCache::new();
    let (mut all_keys, mut all_values) = (Vec::new(), Vec::new());
    let mut fetched = None;
    for step in 0..STEP + 1 {
        let (keys, values) = random_kv([1, 2, 1, 8], Dtype::Float32, step as u64);
        all_keys.push(keys.clone());
        all_values.push(values.clone());
        let (got_keys, got_values) = update(&mut cache, &keys, &values);
        ok(mlx_rs::transforms::eval([&got_keys, &got_values]), "eval");
        let expected = if step < STEP { STEP } else { 2 * STEP };
        assert_eq!(
            cache.capacity(),
            expected,
            "capacity after {} single-token updates",
            step + 1
        );
        fetched = Some((got_keys, got_values));
    }
    let (keys, values) = fetched.expect("at least one update");
    let what = format!("after {} single-token updates", STEP + 1);
    assert_allclose(
        &keys,
        &concatenate(&all_keys, 2),
        EXACT,
        &format!("keys {what}"),
    );
    assert_allclose(
        &values,
        &concatenate(&all_values, 2),
        EXACT,
        &format!("values {what}"),
    );
}

#[rstest]
#[case::batch([2, 2, 3, 8], [1, 2, 1, 8])]
#[case::kv_heads([1, 2, 3, 8], [1, 4, 1, 8])]
#[case::head_dim([1, 2, 3, 8], [1, 2, 1, 16])]
fn task_1_mismatched_keys_are_an_error(#[case] first: [i32; 4], #[case] second: [i32; 4]) {
    let mut cache = KvCache::new();
    let (keys, values) = random_kv(first, Dtype::Float32, 1);
    update(&mut cache, &keys, &values);
    let (keys, values) = random_kv(second, Dtype::Float32, 2);
    assert!(
        cache.update_and_fetch(&keys, &values).is_err(),
        "keys {second:?} cannot join a cache of {first:?}: update_and_fetch must return an Err"
    );
    assert_eq!(
        cache.offset(),
        first[2],
        "a failed update must leave the cache as it was"
    );
}
