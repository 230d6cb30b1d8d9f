//! Task 1: BatchKvCache::add and BatchKvCache::remove

use crate::harness::{
    Op,
    Op::{Add, Remove},
    Tracked, HEADS, HEAD_DIM,
};
use continuous_batching::BatchKvCache;
use mlx_rs::Dtype;
use rstest::rstest;
use test_support::random_array;

#[rstest]
#[case::first_sequence(&[Add(5)])]
#[case::a_shorter_one_joins(&[Add(5), Add(2)])]
#[case::a_longer_one_joins(&[Add(2), Add(5)])]
#[case::three_then_remove_the_first(&[Add(5), Add(2), Add(7), Remove(0)])]
#[case::remove_the_middle(&[Add(5), Add(2), Add(7), Remove(1)])]
#[case::remove_every_row(&[Add(3), Add(4), Remove(1), Remove(0)])]
#[case::empty_then_refilled(&[Add(3), Remove(0), Add(6), Add(1)])]
fn task_1_rows_keep_their_lengths_and_positions(#[case] ops: &[Op]) {
    let mut tracked = Tracked::new(Dtype::Float32);
    tracked.check_lengths();
    for &op in ops {
        tracked.apply(op);
        tracked.check_lengths();
    }
}

/// Bytes of one column of one row: keys and values, `H x D` float32 each.
const COLUMN_BYTES: usize = 2 * HEADS as usize * HEAD_DIM as usize * 4;

/// The columns of storage per row that `nbytes` implies, checking that it is a whole number.
fn columns(cache: &BatchKvCache, what: &str) -> usize {
    let per_column = COLUMN_BYTES * cache.len();
    let bytes = cache.nbytes();
    assert_eq!(
        bytes % per_column,
        0,
        "{what}: nbytes {bytes} should be 2 (K and V) x B {} x H {HEADS} x columns x D {HEAD_DIM} x 4 bytes",
        cache.len()
    );
    bytes / per_column
}

#[test]
fn task_1_memory_follows_the_longest_row() {
    let mut tracked = Tracked::new(Dtype::Float32);
    assert_eq!(tracked.cache.nbytes(), 0, "an empty batch stores nothing");
    tracked.apply(Add(5));
    let first = columns(&tracked.cache, "after adding 5 tokens");
    assert!(first >= 5, "5 tokens need at least 5 columns, got {first}");
    tracked.apply(Add(300));
    let both = columns(&tracked.cache, "after adding 300 tokens to a row of 5");
    assert!(
        both >= 300,
        "300 tokens need at least 300 columns, got {both}"
    );
    // Removing the 300-token row leaves 295 columns of padding in front of the 5-token row,
    // which must go: memory follows the longest sequence still running.
    tracked.apply(Remove(1));
    let after = columns(&tracked.cache, "after removing the 300-token row");
    assert!(
        after <= both - 295,
        "after removing the 300-token row, the 295 columns of padding before the 5-token row should be dropped: {both} columns before, {after} after"
    );
    tracked.apply(Remove(0));
    assert_eq!(
        tracked.cache.nbytes(),
        0,
        "removing the last row should free everything"
    );
}

#[rstest]
#[case::two_rows_at_once(&[2, HEADS, 3, HEAD_DIM])]
#[case::other_kv_heads(&[1, 4, 3, HEAD_DIM])]
#[case::other_head_dim(&[1, HEADS, 3, 16])]
#[case::three_dimensions(&[HEADS, 3, HEAD_DIM])]
fn task_1_a_sequence_that_does_not_fit_is_an_error(#[case] shape: &[i32]) {
    let keys = random_array(shape, Dtype::Float32, 1);
    let mut tracked = Tracked::new(Dtype::Float32);
    if shape[0] != 1 || shape.len() != 4 {
        assert!(
            tracked.cache.add(&keys, &keys).is_err(),
            "keys of shape {shape:?} cannot join an empty batch: a row joins as [1, H_kv, n, D]"
        );
        tracked.check_lengths();
    }
    tracked.apply(Add(4));
    assert!(
        tracked.cache.add(&keys, &keys).is_err(),
        "keys of shape {shape:?} cannot join a batch of [1, {HEADS}, 4, {HEAD_DIM}]: add must return an Err"
    );
    tracked.check_lengths();
}

#[test]
fn task_1_removing_a_row_that_is_not_there_is_an_error() {
    let mut tracked = Tracked::new(Dtype::Float32);
    assert!(
        tracked.cache.remove(0).is_err(),
        "an empty batch has no row 0"
    );
    tracked.apply(Add(3));
    tracked.apply(Add(5));
    assert!(
        tracked.cache.remove(2).is_err(),
        "a batch of 2 rows has no row 2"
    );
    tracked.check_lengths();
}
