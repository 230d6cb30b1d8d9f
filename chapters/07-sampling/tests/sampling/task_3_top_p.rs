//! Task 3: top-p

use crate::harness::{assert_error_names, assert_kept, logits_of, vector, DYADIC, FIVE, INF};
use mlx_rs::Dtype;
use rstest::rstest;
use sampling::top_p_filter;
use std::f32::consts::LN_2;
use test_support::expect_ok;

#[rstest]
#[case::below_the_top_token(0.3, &[3])]
#[case::the_top_token_reaches_exactly_p(0.5, &[3])]
#[case::just_above_the_top_token(0.6, &[1, 3])]
#[case::two_tokens_reach_exactly_p(0.75, &[1, 3])]
#[case::three_tokens(0.8, &[1, 3, 4])]
#[case::three_tokens_reach_exactly_p(0.875, &[1, 3, 4])]
#[case::ties_at_the_boundary_are_all_kept(0.9, &[0, 1, 2, 3, 4, 5, 6])]
#[case::one_keeps_everything(1.0, &[0, 1, 2, 3, 4, 5, 6])]
fn task_3_top_p_keeps_the_smallest_nucleus(#[case] top_p: f32, #[case] kept: &[usize]) {
    let input = vector(&logits_of(&DYADIC));
    let got = expect_ok(top_p_filter(&input, top_p), "top_p_filter");
    assert_kept(
        &got,
        &input,
        kept,
        &format!("top-p {top_p} of probabilities {DYADIC:?}"),
    );
}

/// The logits of [`DYADIC`] plus 3: softmax does not change, nor does the nucleus.
fn shifted_dyadic_logits() -> Vec<f32> {
    logits_of(&DYADIC).iter().map(|logit| logit + 3.0).collect()
}

#[rstest]
#[case::shifted_logits(shifted_dyadic_logits(), 0.7, &[1, 3])]
// Probabilities 1/2, 0 (removed before), 1/4, 1/8, 1/8.
#[case::removed_tokens_stay_removed(vec![0.0, -INF, -LN_2, -2.0 * LN_2, -2.0 * LN_2], 0.7, &[0, 2])]
// Probabilities about 0.665, 0.245, 0.090: 0.665 + 0.245 = 0.910 reaches 0.9.
#[case::natural_logits(vec![2.0, 1.0, 0.0], 0.9, &[0, 1])]
// Sorted probabilities about 0.636, 0.234, 0.086, 0.032, 0.012: 0.870 is below 0.9.
#[case::natural_logits_three_tokens(FIVE.to_vec(), 0.9, &[1, 3, 4])]
fn task_3_top_p_on_other_logits(
    #[case] logits: Vec<f32>,
    #[case] top_p: f32,
    #[case] kept: &[usize],
) {
    let input = vector(&logits);
    let got = expect_ok(top_p_filter(&input, top_p), "top_p_filter");
    assert_kept(&got, &input, kept, &format!("top-p {top_p} of {logits:?}"));
}

#[rstest]
#[case::float16(Dtype::Float16)]
#[case::bfloat16(Dtype::Bfloat16)]
fn task_3_top_p_keeps_the_dtype(#[case] dtype: Dtype) {
    // Probabilities about 0.636, 0.234, 0.086, 0.032, 0.012.
    let input = vector(FIVE).as_dtype(dtype).unwrap();
    let got = expect_ok(top_p_filter(&input, 0.8), "top_p_filter");
    assert_kept(
        &got,
        &input,
        &[3, 4],
        &format!("top-p 0.8 of {dtype:?} {FIVE:?}"),
    );
}

#[rstest]
#[case::zero(0.0)]
#[case::negative(-0.5)]
#[case::above_one(1.5)]
#[case::not_a_number(f32::NAN)]
fn task_3_top_p_rejects_values_outside_0_to_1(#[case] top_p: f32) {
    assert_error_names(
        top_p_filter(&vector(FIVE), top_p),
        "top_p",
        &format!("top_p {top_p}"),
    );
}
