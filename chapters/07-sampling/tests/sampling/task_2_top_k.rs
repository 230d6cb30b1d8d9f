//! Task 2: top-k

use crate::harness::{assert_error_names, assert_kept, vector, FIVE, INF};
use mlx_rs::Dtype;
use rstest::rstest;
use sampling::top_k_filter;
use test_support::expect_ok;

#[rstest]
#[case::k_1(FIVE, 1, &[3])]
#[case::k_2(FIVE, 2, &[3, 4])]
#[case::k_3(FIVE, 3, &[1, 3, 4])]
#[case::k_equals_the_vocabulary(FIVE, 5, &[0, 1, 2, 3, 4])]
#[case::k_above_the_vocabulary(FIVE, 9, &[0, 1, 2, 3, 4])]
#[case::negative_logits(&[-1.5, -0.5, -3.0, -2.0], 2, &[0, 1])]
#[case::ties_at_the_boundary_are_all_kept(&[2.0, 1.0, 2.0, 0.0, 2.0], 2, &[0, 2, 4])]
#[case::ties_inside_the_top_k(&[3.0, 3.0, 1.0, 2.0], 2, &[0, 1])]
#[case::removed_tokens_stay_removed(&[-INF, 1.0, -INF, 0.0, 2.0], 4, &[1, 3, 4])]
fn task_2_top_k_keeps_the_k_largest(
    #[case] logits: &[f32],
    #[case] k: usize,
    #[case] kept: &[usize],
) {
    let input = vector(logits);
    let got = expect_ok(top_k_filter(&input, k), "top_k_filter");
    assert_kept(&got, &input, kept, &format!("top-k {k} of {logits:?}"));
}

#[rstest]
#[case::float16(Dtype::Float16)]
#[case::bfloat16(Dtype::Bfloat16)]
fn task_2_top_k_keeps_the_dtype(#[case] dtype: Dtype) {
    let input = vector(FIVE).as_dtype(dtype).unwrap();
    let got = expect_ok(top_k_filter(&input, 2), "top_k_filter");
    assert_kept(
        &got,
        &input,
        &[3, 4],
        &format!("top-k 2 of {dtype:?} {FIVE:?}"),
    );
}

#[test]
fn task_2_top_k_rejects_k_0() {
    assert_error_names(top_k_filter(&vector(FIVE), 0), "k", "top-k with k = 0");
}
