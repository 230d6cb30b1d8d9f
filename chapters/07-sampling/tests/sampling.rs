//! Chapter 7 tests. Run them with `cargo xtask test sampling` (add `--task N` for one task).
//! Expected kept tokens and logits are worked out by hand; the sampler's frequencies are
//! compared with the filtered distribution computed here, in f64, from the definitions.

use mlx_rs::{Array, Dtype};
use rstest::rstest;
use sampling::{
    apply_repetition_penalty, apply_temperature, min_p_filter, top_k_filter, top_p_filter, Sampler,
    SamplingParams,
};
use std::f32::consts::LN_2;
use test_support::{assert_allclose, expect_ok, Tolerance};

const INF: f32 = f32::INFINITY;

fn vector(values: &[f32]) -> Array {
    Array::from_slice(values, &[values.len() as i32])
}

fn values_of(array: &Array, what: &str) -> Vec<f32> {
    let values = array
        .as_dtype(Dtype::Float32)
        .unwrap_or_else(|error| panic!("{what}: cannot read values as f32: {error}"));
    values
        .eval()
        .unwrap_or_else(|error| panic!("{what}: cannot evaluate: {error}"));
    values.as_slice::<f32>().to_vec()
}

/// Checks a filter's output: the tokens in `kept` keep their logits exactly, every other
/// token is `-inf`, and the shape and dtype are those of `input`.
fn assert_kept(got: &Array, input: &Array, kept: &[usize], what: &str) {
    assert_eq!(got.shape(), input.shape(), "{what}: wrong shape");
    assert_eq!(got.dtype(), input.dtype(), "{what}: must keep the dtype");
    let (got_values, input_values) = (values_of(got, what), values_of(input, what));
    let got_kept: Vec<usize> = (0..got_values.len())
        .filter(|&i| got_values[i] > -INF)
        .collect();
    assert_eq!(
        got_kept, kept,
        "{what}: kept tokens {got_kept:?} (the others -inf), expected {kept:?}; got logits {got_values:?}"
    );
    for &i in kept {
        assert_eq!(
            got_values[i], input_values[i],
            "{what}: a kept logit must not change, token {i}: got {}, expected {}",
            got_values[i], input_values[i]
        );
    }
    for (i, value) in got_values.iter().enumerate() {
        assert!(
            kept.contains(&i) || *value == -INF,
            "{what}: removed token {i} must be -inf, got {value}"
        );
    }
}

fn assert_error_names<T>(result: mlx_rs::error::Result<T>, name: &str, what: &str) {
    let error = match result {
        Ok(_) => panic!("{what} must be rejected"),
        Err(error) => error.to_string(),
    };
    assert!(
        error.contains(name),
        "{what}: the error should name `{name}`: {error}"
    );
}

// ---------------------------------------------------------------------------------------------
// Task 1: temperature

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

// ---------------------------------------------------------------------------------------------
// Task 2: top-k

const FIVE: &[f32] = &[1.0, 3.0, 2.0, 5.0, 4.0];

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

// ---------------------------------------------------------------------------------------------
// Task 3: top-p

/// Probabilities that a float32 softmax reproduces exactly, so that a cumulative sum can equal
/// `top_p` exactly. Relative to the top token the weights are 1, 1/2, 1/4 and 1/16: their logits
/// (0, -ln 2, -2 ln 2, -4 ln 2) round to exact multiples of the float32 ln 2, whose exponentials
/// round to the exact powers of two; the weights sum to 2, so dividing by the sum is exact too.
/// Sorted: 1/2 (token 3), 1/4 (token 1), 1/8 (token 4), then four tied tokens of 1/32.
const DYADIC: [f64; 7] = [
    1.0 / 32.0,
    1.0 / 4.0,
    1.0 / 32.0,
    1.0 / 2.0,
    1.0 / 8.0,
    1.0 / 32.0,
    1.0 / 32.0,
];

/// Logits with softmax `probabilities`, the most probable at logit 0.
fn logits_of(probabilities: &[f64]) -> Vec<f32> {
    let top = probabilities.iter().copied().fold(0.0, f64::max);
    probabilities
        .iter()
        .map(|p| (p / top).ln() as f32)
        .collect()
}

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

// ---------------------------------------------------------------------------------------------
// Task 4: min-p

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

// ---------------------------------------------------------------------------------------------
// Task 5: repetition penalty

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

// ---------------------------------------------------------------------------------------------
// Task 6: the sampler

fn sampler(params: SamplingParams) -> Sampler {
    expect_ok(Sampler::new(params), "Sampler::new")
}

fn greedy() -> SamplingParams {
    SamplingParams::default()
}

#[rstest]
#[case::first(&[5.0, 1.0, 1.0, 1.0], greedy(), 0)]
#[case::middle(&[0.1, 2.0, -1.0, 1.9], greedy(), 1)]
#[case::all_negative(&[-3.0, -2.0, -5.0], greedy(), 1)]
#[case::last(&[0.0, 0.0, 7.5], greedy(), 2)]
#[case::filters_change_nothing(&[0.1, 2.0, -1.0, 1.9], SamplingParams { top_k: Some(1), top_p: Some(0.1), min_p: Some(0.9), seed: 7, ..greedy() }, 1)]
fn task_6_temperature_0_is_the_argmax(
    #[case] logits: &[f32],
    #[case] params: SamplingParams,
    #[case] expected: u32,
) {
    let mut sampler = sampler(params);
    for draw in 0..3 {
        let token = expect_ok(sampler.sample(&vector(logits), &[]), "sample");
        assert_eq!(
            token, expected,
            "greedy draw {draw} of {logits:?} with {params:?}: got token {token}, expected the argmax {expected}"
        );
    }
}

#[rstest]
// [3, 2.5, -1] becomes [1.5, 2.5, -1].
#[case::positive(&[3.0, 2.5, -1.0], &[0, 0], 2.0, 1)]
// [-0.5, -0.6] becomes [-0.75, -0.6].
#[case::negative(&[-0.5, -0.6], &[0], 1.5, 1)]
// Not previous: unchanged.
#[case::others_untouched(&[3.0, 2.5, -1.0], &[2], 2.0, 0)]
fn task_6_greedy_applies_the_repetition_penalty(
    #[case] logits: &[f32],
    #[case] previous: &[u32],
    #[case] penalty: f32,
    #[case] expected: u32,
) {
    let params = SamplingParams {
        repetition_penalty: Some(penalty),
        ..greedy()
    };
    let token = expect_ok(sampler(params).sample(&vector(logits), previous), "sample");
    assert_eq!(
        token, expected,
        "greedy on {logits:?} after {previous:?} with penalty {penalty}"
    );
}

/// The distribution the sampler must draw from, computed in f64 from the definitions: the
/// repetition penalty, temperature, top-k, top-p and min-p, then normalized.
fn filtered_distribution(logits: &[f32], previous: &[u32], params: &SamplingParams) -> Vec<f64> {
    let mut logits: Vec<f64> = logits.iter().map(|&l| f64::from(l)).collect();
    if let Some(penalty) = params.repetition_penalty.map(f64::from) {
        for (id, logit) in logits.iter_mut().enumerate() {
            if previous.contains(&(id as u32)) {
                *logit = if *logit > 0.0 {
                    *logit / penalty
                } else {
                    *logit * penalty
                };
            }
        }
    }
    let temperature = f64::from(params.temperature);
    let logits: Vec<f64> = logits.iter().map(|l| l / temperature).collect();
    let softmax = |logits: &[f64]| -> Vec<f64> {
        let top = logits.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let weights: Vec<f64> = logits.iter().map(|l| (l - top).exp()).collect();
        let total: f64 = weights.iter().sum();
        weights.iter().map(|w| w / total).collect()
    };
    let descending = |values: &[f64]| -> Vec<f64> {
        let mut sorted = values.to_vec();
        sorted.sort_by(|a, b| b.total_cmp(a));
        sorted
    };
    let mut p = softmax(&logits);
    let mut keep = vec![true; p.len()];
    if let Some(k) = params.top_k {
        if k < p.len() {
            let kth = descending(&p)[k - 1];
            keep.iter_mut()
                .zip(&p)
                .for_each(|(keep, &q)| *keep &= q >= kth);
        }
    }
    let renormalize = |p: &[f64], keep: &[bool]| -> Vec<f64> {
        let total: f64 = p.iter().zip(keep).filter(|(_, &k)| k).map(|(q, _)| q).sum();
        p.iter()
            .zip(keep)
            .map(|(q, &k)| if k { q / total } else { 0.0 })
            .collect()
    };
    p = renormalize(&p, &keep);
    if let Some(top_p) = params.top_p.map(f64::from) {
        let sorted = descending(&p);
        let (mut mass, mut smallest) = (0.0, sorted[0]);
        for q in sorted {
            if mass >= top_p {
                break;
            }
            mass += q;
            smallest = q;
        }
        keep.iter_mut()
            .zip(&p)
            .for_each(|(keep, &q)| *keep &= q >= smallest);
        p = renormalize(&p, &keep);
    }
    if let Some(min_p) = params.min_p.map(f64::from) {
        let threshold = min_p * p.iter().copied().fold(0.0, f64::max);
        keep.iter_mut()
            .zip(&p)
            .for_each(|(keep, &q)| *keep &= q >= threshold);
        p = renormalize(&p, &keep);
    }
    p
}

/// The 99.9% quantile of the chi-square distribution with 1 to 6 degrees of freedom.
const CHI_SQUARE_999: [f64; 6] = [10.828, 13.816, 16.266, 18.467, 20.515, 22.458];

/// Enough for the chi-square test to see a wrong temperature or a filter applied out of order,
/// and few enough that a draw at a time (each a dozen small MLX ops) takes about a second.
const DRAWS: usize = 3_000;

const LOGITS: &[f32] = &[1.0, 2.5, 0.3, 2.0, -0.5];

fn sampled(temperature: f32) -> SamplingParams {
    SamplingParams {
        temperature,
        seed: 1234,
        ..SamplingParams::default()
    }
}

// Every boundary is far from the probabilities, so that float32 and f64 agree on the kept set.
// At temperature 1 they are about 0.112, 0.502, 0.056, 0.305 and 0.025: top-k 3 keeps tokens 0,
// 1 and 3; top-p 0.7 keeps 1 and 3 (0.502 before token 3, 0.807 before token 0); min-p 0.1 drops
// token 4 (the threshold is 0.050).
#[rstest]
#[case::temperature_0_7(sampled(0.7), &[])]
#[case::top_k_3(SamplingParams { top_k: Some(3), ..sampled(1.0) }, &[])]
#[case::top_p_0_7(SamplingParams { top_p: Some(0.7), ..sampled(1.0) }, &[])]
#[case::min_p_0_1(SamplingParams { min_p: Some(0.1), ..sampled(1.0) }, &[])]
// Penalized and cooled: about 0.122, 0.386, 0.051, 0.425, 0.015. Top-k drops token 4, top-p
// token 2 (0.825 before token 0, 0.948 before token 2) and min-p token 0 (0.131 < 0.35 * 0.456).
#[case::everything(SamplingParams { temperature: 0.8, top_k: Some(4), top_p: Some(0.9), min_p: Some(0.35), repetition_penalty: Some(1.3), seed: 99 }, &[1, 1, 4])]
fn task_6_sampled_frequencies_match_the_filtered_distribution(
    #[case] params: SamplingParams,
    #[case] previous: &[u32],
) {
    let expected = filtered_distribution(LOGITS, previous, &params);
    let mut sampler = sampler(params);
    let logits = vector(LOGITS);
    let mut counts = vec![0usize; LOGITS.len()];
    for _ in 0..DRAWS {
        let token = expect_ok(sampler.sample(&logits, previous), "sample") as usize;
        assert!(
            token < LOGITS.len(),
            "sampled token {token} of {} logits",
            LOGITS.len()
        );
        counts[token] += 1;
    }
    let what = format!(
        "{DRAWS} draws with {params:?} after {previous:?}: counts {counts:?}, expected probabilities {expected:?}"
    );
    for (token, (&count, &p)) in counts.iter().zip(&expected).enumerate() {
        assert!(
            p > 0.0 || count == 0,
            "{what}: token {token} is filtered out but was drawn {count} times"
        );
    }
    let kept: Vec<(usize, f64)> = counts
        .iter()
        .zip(&expected)
        .filter(|(_, &p)| p > 0.0)
        .map(|(&count, &p)| (count, p))
        .collect();
    let chi_square: f64 = kept
        .iter()
        .map(|&(count, p)| {
            let expected_count = p * DRAWS as f64;
            (count as f64 - expected_count).powi(2) / expected_count
        })
        .sum();
    if kept.len() == 1 {
        return;
    }
    let critical = CHI_SQUARE_999[kept.len() - 2];
    println!("{what}: chi-square {chi_square:.3}, critical value {critical}");
    assert!(
        chi_square < critical,
        "{what}: chi-square {chi_square:.2} with {} degrees of freedom exceeds the 99.9% quantile {critical}",
        kept.len() - 1
    );
}

fn draw_sequence(seed: u64, length: usize) -> Vec<u32> {
    let mut sampler = sampler(SamplingParams {
        seed,
        ..sampled(1.0)
    });
    let uniform = vector(&[0.0; 8]);
    (0..length)
        .map(|_| expect_ok(sampler.sample(&uniform, &[]), "sample"))
        .collect()
}

#[test]
fn task_6_the_same_seed_gives_the_same_tokens() {
    let first = draw_sequence(42, 64);
    let again = draw_sequence(42, 64);
    assert_eq!(
        first, again,
        "two samplers with seed 42 must draw the same tokens"
    );
    assert!(
        first.iter().any(|&token| token != first[0]),
        "64 draws from 8 equally likely tokens were all {}: is a new key split off for every draw?",
        first[0]
    );
}

#[test]
fn task_6_different_seeds_give_different_tokens() {
    let one = draw_sequence(1, 64);
    let two = draw_sequence(2, 64);
    assert_ne!(
        one, two,
        "seeds 1 and 2 drew the same 64 tokens from 8 equally likely ones"
    );
}

#[rstest]
#[case::negative_temperature("temperature", SamplingParams { temperature: -1.0, ..greedy() })]
#[case::temperature_not_a_number("temperature", SamplingParams { temperature: f32::NAN, ..greedy() })]
#[case::infinite_temperature("temperature", SamplingParams { temperature: INF, ..greedy() })]
#[case::top_k_0("top_k", SamplingParams { top_k: Some(0), ..greedy() })]
#[case::top_p_0("top_p", SamplingParams { top_p: Some(0.0), ..greedy() })]
#[case::top_p_above_1("top_p", SamplingParams { top_p: Some(1.5), ..greedy() })]
#[case::top_p_not_a_number("top_p", SamplingParams { top_p: Some(f32::NAN), ..greedy() })]
#[case::min_p_negative("min_p", SamplingParams { min_p: Some(-0.1), ..greedy() })]
#[case::min_p_above_1("min_p", SamplingParams { min_p: Some(1.5), ..greedy() })]
#[case::penalty_0("repetition_penalty", SamplingParams { repetition_penalty: Some(0.0), ..greedy() })]
#[case::penalty_negative("repetition_penalty", SamplingParams { repetition_penalty: Some(-1.0), ..greedy() })]
#[case::penalty_infinite("repetition_penalty", SamplingParams { repetition_penalty: Some(INF), ..greedy() })]
fn task_6_sampler_rejects_invalid_parameters(#[case] name: &str, #[case] params: SamplingParams) {
    assert_error_names(Sampler::new(params), name, &format!("{params:?}"));
}

#[rstest]
#[case::greedy(greedy())]
#[case::edges(SamplingParams { temperature: 1e-3, top_k: Some(1), top_p: Some(1.0), min_p: Some(0.0), repetition_penalty: Some(1.0), seed: u64::MAX })]
#[case::min_p_1(SamplingParams { temperature: 1.0, min_p: Some(1.0), ..greedy() })]
fn task_6_sampler_accepts_the_edges_of_each_range(#[case] params: SamplingParams) {
    let mut sampler = sampler(params);
    let token = expect_ok(sampler.sample(&vector(FIVE), &[3]), "sample");
    assert!(token < FIVE.len() as u32, "{params:?}: token {token} of 5");
}
