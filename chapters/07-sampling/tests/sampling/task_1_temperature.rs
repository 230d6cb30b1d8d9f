//! Task 1: temperature

use crate::harness::{assert_error_names, vector, INF};
use mlx_rs::Dtype;
use rstest::rstest;
use sampling::apply_temperature;
use test_support::{assert_allclose, expect_ok, Tolerance};

#[rstest]
#[case::half(0.5, &[1.0, -2.0, 0.5, 3.0], &[2.0, -4.0, 1.0, 6.0])]
#[case::one_changes_nothing(1.0, &[1.0, -2.0, 0.5, 3.0], &[1.0, -2.0, 0.5, 3.0])]
#[case::two(2.0, &[1.0, -2.0, 0.5, 3.0], &[0.5, -1.0, 0.25, 1.5])]
#[case::removed_tokens_stay_removed(4.0, &[8.0, -INF, 2.0], &[2.0, -INF, 0.5])]
#[case::cold(0.1, &[1.0, -0.5, 0.0, 0.25], &[10.0, -5.0, 0.0, 2.5])]
fn task_1_temperature_divides_the_logits(
    #[case] temperature: f32,
    #[case] logits: &[f32],
    #[case] expected: &[f32],
) {
    let got = expect_ok(
        apply_temperature(&vector(logits), temperature),
        "apply_temperature",
    );
    assert_allclose(
        &got,
        &vector(expected),
        Tolerance::F32,
        &format!("logits {logits:?} at temperature {temperature}"),
    );
}

#[rstest]
#[case::float16(Dtype::Float16)]
#[case::bfloat16(Dtype::Bfloat16)]
fn task_1_temperature_keeps_the_dtype(#[case] dtype: Dtype) {
    let logits = vector(&[1.0, -2.0, 0.5, 3.0]).as_dtype(dtype).unwrap();
    let got = expect_ok(apply_temperature(&logits, 0.5), "apply_temperature");
    assert_eq!(got.dtype(), dtype, "apply_temperature must keep the dtype");
    // Powers of two: exact in every float format.
    assert_allclose(
        &got,
        &vector(&[2.0, -4.0, 1.0, 6.0]),
        Tolerance::for_dtype(dtype),
        &format!("{dtype:?} logits at temperature 0.5"),
    );
}

#[rstest]
#[case::zero(0.0)]
#[case::negative(-1.0)]
#[case::not_a_number(f32::NAN)]
#[case::infinite(INF)]
fn task_1_temperature_rejects_what_cannot_scale(#[case] temperature: f32) {
    assert_error_names(
        apply_temperature(&vector(&[1.0, 2.0]), temperature),
        "temperature",
        &format!("temperature {temperature}"),
    );
}
