//! Task 2: KvCache::truncate and KvCache::nbytes

use crate::harness::{concatenate, random_kv, update, EXACT};
use kv_cache::KvCache;
use mlx_rs::{ops::indexing::IndexOp, Array, Dtype};
use rstest::rstest;
use test_support::{assert_allclose, expect_ok};

#[rstest]
#[case::rewind_a_few(&[6, 4], 7, 3)]
#[case::to_empty(&[5], 0, 2)]
#[case::keep_everything(&[5], 5, 1)]
#[case::keep_a_prefix_of_two_steps(&[300, 1], 100, 1)]
fn task_2_truncate_then_update_continues_the_kept_prefix(
    #[case] before: &[i32],
    #[case] keep: i32,
    #[case] new_length: i32,
) {
    let shape = |length| [2, 2, length, 8];
    let mut cache = KvCache::new();
    let (mut all_keys, mut all_values) = (Vec::new(), Vec::new());
    for (step, &length) in before.iter().enumerate() {
        let (keys, values) = random_kv(shape(length), Dtype::Float32, step as u64);
        update(&mut cache, &keys, &values);
        all_keys.push(keys);
        all_values.push(values);
    }
    let capacity = cache.capacity();
    expect_ok(cache.truncate(keep), "KvCache::truncate");
    assert_eq!(cache.offset(), keep, "offset after truncate({keep})");
    assert_eq!(
        cache.capacity(),
        capacity,
        "truncate keeps the storage: the capacity should not change"
    );

    let (keys, values) = random_kv(shape(new_length), Dtype::Float32, 99);
    let (got_keys, got_values) = update(&mut cache, &keys, &values);
    let kept = |parts: &[Array]| concatenate(parts, 2).index((.., .., ..keep, ..));
    let what = format!("after updates of {before:?}, truncate({keep}) and {new_length} new tokens");
    assert_allclose(
        &got_keys,
        &concatenate(&[kept(&all_keys), keys], 2),
        EXACT,
        &format!("keys {what}"),
    );
    assert_allclose(
        &got_values,
        &concatenate(&[kept(&all_values), values], 2),
        EXACT,
        &format!("values {what}"),
    );
    assert_eq!(cache.offset(), keep + new_length);
}

#[test]
fn task_2_truncating_beyond_the_cache_is_an_error() {
    let mut empty = KvCache::new();
    assert!(
        empty.truncate(0).is_ok(),
        "an empty cache can be truncated to 0"
    );
    assert!(
        empty.truncate(1).is_err(),
        "an empty cache cannot be truncated to 1"
    );
    let mut cache = KvCache::new();
    let (keys, values) = random_kv([1, 2, 5, 8], Dtype::Float32, 1);
    update(&mut cache, &keys, &values);
    for length in [6, -1] {
        assert!(
            cache.truncate(length).is_err(),
            "a cache of 5 positions cannot be truncated to {length}"
        );
        assert_eq!(
            cache.offset(),
            5,
            "a failed truncate({length}) must leave the cache as it was"
        );
    }
}

#[rstest]
#[case::f32_one_step(1, 2, 16, Dtype::Float32, 4, 10, 256)]
#[case::f16_batch_two_steps(2, 3, 64, Dtype::Float16, 2, 300, 512)]
#[case::bf16_exactly_a_step(1, 4, 8, Dtype::Bfloat16, 2, 256, 256)]
fn task_2_nbytes_counts_keys_and_values_at_capacity(
    #[case] batch: i32,
    #[case] heads: i32,
    #[case] head_dim: i32,
    #[case] dtype: Dtype,
    #[case] dtype_bytes: usize,
    #[case] length: i32,
    #[case] capacity: usize,
) {
    let mut cache = KvCache::new();
    assert_eq!(cache.nbytes(), 0, "an empty cache stores nothing");
    let (keys, values) = random_kv([batch, heads, length, head_dim], dtype, 3);
    update(&mut cache, &keys, &values);
    let expected = 2 * batch as usize * heads as usize * head_dim as usize * capacity * dtype_bytes;
    assert_eq!(
        cache.nbytes(),
        expected,
        "2 (K and V) x B {batch} x H_kv {heads} x D {head_dim} x capacity {capacity} x {dtype_bytes} bytes ({dtype:?})"
    );
    expect_ok(cache.truncate(1), "KvCache::truncate");
    assert_eq!(cache.nbytes(), expected, "truncate keeps the storage");
}
