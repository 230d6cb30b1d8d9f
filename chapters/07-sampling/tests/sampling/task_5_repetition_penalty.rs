//! Task 5: repetition penalty

use crate::harness::{assert_error_names, vector, INF};
use mlx_rs::Dtype;
use rstest::rstest;
use sampling::apply_repetition_penalty;
use test_support::{assert_allclose, expect_ok, Tolerance};

const SIX: &[f32] = &[2.0, -1.0, 0.5, -3.0, 0.0, 4.0];

#[rstest]
#[case::repeated_ids_count_once(2.0, &[0, 1, 1, 4, 0], &[1.0, -2.0, 0.5, -3.0, 0.0, 4.0])]
#[case::positive_and_negative(2.0, &[5, 3], &[2.0, -1.0, 0.5, -6.0, 0.0, 2.0])]
#[case::below_one_encourages(0.5, &[0, 1], &[4.0, -0.5, 0.5, -3.0, 0.0, 4.0])]
#[case::a_third(1.5, &[2, 2, 2, 3], &[2.0, -1.0, 0.5 / 1.5, -4.5, 0.0, 4.0])]
#[case::one_changes_nothing(1.0, &[0, 1, 2, 3], SIX)]
#[case::no_previous_tokens(2.0, &[], SIX)]
fn task_5_repetition_penalty_rescales_previous_tokens(
    #[case] penalty: f32,
    #[case] previous: &[u32],
    #[case] expected: &[f32],
) {
    let got = expect_ok(
        apply_repetition_penalty(&vector(SIX), previous, penalty),
        "apply_repetition_penalty",
    );
    assert_allclose(
        &got,
        &vector(expected),
        Tolerance::F32,
        &format!("penalty {penalty} for tokens {previous:?} on logits {SIX:?}"),
    );
}

#[rstest]
#[case::float16(Dtype::Float16)]
#[case::bfloat16(Dtype::Bfloat16)]
fn task_5_repetition_penalty_keeps_the_dtype(#[case] dtype: Dtype) {
    let logits = vector(SIX).as_dtype(dtype).unwrap();
    let got = expect_ok(
        apply_repetition_penalty(&logits, &[5, 3, 5], 2.0),
        "apply_repetition_penalty",
    );
    assert_eq!(
        got.dtype(),
        dtype,
        "apply_repetition_penalty must keep the dtype"
    );
    assert_allclose(
        &got,
        &vector(&[2.0, -1.0, 0.5, -6.0, 0.0, 2.0]),
        Tolerance::for_dtype(dtype),
        &format!("penalty 2 for tokens [5, 3, 5] on {dtype:?} logits {SIX:?}"),
    );
}

#[rstest]
#[case::zero(0.0)]
#[case::negative(-2.0)]
#[case::not_a_number(f32::NAN)]
#[case::infinite(INF)]
fn task_5_repetition_penalty_rejects_bad_penalties(#[case] penalty: f32) {
    assert_error_names(
        apply_repetition_penalty(&vector(SIX), &[0], penalty),
        "penalty",
        &format!("penalty {penalty}"),
    );
}

#[test]
fn task_5_repetition_penalty_rejects_ids_outside_the_vocabulary() {
    assert_error_names(
        apply_repetition_penalty(&vector(SIX), &[1, 6], 2.0),
        "previous_tokens",
        "token id 6 with 6 logits",
    );
}
