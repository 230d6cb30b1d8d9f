//! Task 4: min-p

use crate::harness::{assert_error_names, assert_kept, logits_of, vector, DYADIC, FIVE, INF};
use mlx_rs::Dtype;
use rstest::rstest;
use sampling::min_p_filter;
use test_support::expect_ok;

#[rstest]
#[case::zero_keeps_everything(0.0, &[0, 1, 2, 3, 4, 5, 6])]
#[case::exactly_at_the_smallest(0.0625, &[0, 1, 2, 3, 4, 5, 6])]
#[case::just_above_the_smallest(0.07, &[1, 3, 4])]
#[case::exactly_at_an_eighth(0.25, &[1, 3, 4])]
#[case::between(0.3, &[1, 3])]
#[case::exactly_at_a_quarter(0.5, &[1, 3])]
#[case::one_keeps_the_top_token(1.0, &[3])]
fn task_4_min_p_keeps_tokens_near_the_top(#[case] min_p: f32, #[case] kept: &[usize]) {
    // The top token has probability 1/2: the threshold is min_p / 2.
    let input = vector(&logits_of(&DYADIC));
    let got = expect_ok(min_p_filter(&input, min_p), "min_p_filter");
    assert_kept(
        &got,
        &input,
        kept,
        &format!("min-p {min_p} of probabilities {DYADIC:?}"),
    );
}

#[rstest]
#[case::ties_with_the_top_token(&[2.0, 2.0, 0.0, 1.0], 1.0, &[0, 1])]
#[case::removed_tokens_stay_removed(&[0.0, -INF, -1.0, -4.0], 0.1, &[0, 2])]
// Probabilities about 0.636, 0.234, 0.086, 0.032, 0.012; the threshold 0.2 * 0.636 = 0.127.
#[case::natural_logits(FIVE, 0.2, &[3, 4])]
fn task_4_min_p_on_other_logits(
    #[case] logits: &[f32],
    #[case] min_p: f32,
    #[case] kept: &[usize],
) {
    let input = vector(logits);
    let got = expect_ok(min_p_filter(&input, min_p), "min_p_filter");
    assert_kept(&got, &input, kept, &format!("min-p {min_p} of {logits:?}"));
}

#[rstest]
#[case::float16(Dtype::Float16)]
#[case::bfloat16(Dtype::Bfloat16)]
fn task_4_min_p_keeps_the_dtype(#[case] dtype: Dtype) {
    let input = vector(FIVE).as_dtype(dtype).unwrap();
    let got = expect_ok(min_p_filter(&input, 0.2), "min_p_filter");
    assert_kept(
        &got,
        &input,
        &[3, 4],
        &format!("min-p 0.2 of {dtype:?} {FIVE:?}"),
    );
}

#[rstest]
#[case::negative(-0.1)]
#[case::above_one(1.5)]
#[case::not_a_number(f32::NAN)]
fn task_4_min_p_rejects_values_outside_0_to_1(#[case] min_p: f32) {
    assert_error_names(
        min_p_filter(&vector(FIVE), min_p),
        "min_p",
        &format!("min_p {min_p}"),
    );
}
