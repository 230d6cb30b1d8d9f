//! Task 6: the sampler

use crate::harness::{assert_error_names, vector, FIVE, INF};
use rstest::rstest;
use sampling::{Sampler, SamplingParams};
use test_support::expect_ok;

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
