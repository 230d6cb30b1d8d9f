//! Task 4 (and 3): the log-probabilities a request asks for, filled in for each token it is
//! given, batched beside requests that ask for none.

use crate::harness::{config, request, seq, tiny, Driver};
use continuous_batching::{Event, Model, SamplingParams, TokenLogprobs};
use mlx_rs::{ops::indexing::IndexOp, Array};
use rstest::rstest;
use std::collections::BTreeMap;
use test_support::{expect_ok as ok, log_softmax};

/// Log-probabilities of a model's output distribution within this of an independent f64
/// log-softmax of the logits (the batch's forward and a lone one differ by float rounding).
const TOLERANCE: f64 = 1e-4;

/// The last position's logits of `tokens` run alone through the model, from an empty cache.
fn last_logits(model: &Model, tokens: &[u32]) -> Vec<f32> {
    let input = Array::from_slice(tokens, &[1, tokens.len() as i32]);
    let logits = ok(
        model.forward(&input, &mut model.new_cache()),
        "Model::forward",
    );
    logits.index((0, -1)).as_slice::<f32>().to_vec()
}

/// `got` (the scheduler's, for a request that asked for `top` alternatives and chose `token`)
/// against the reference distribution `expected`.
fn check(got: &TokenLogprobs, token: u32, top: usize, expected: &[f64], what: &str) {
    let want = expected[token as usize];
    assert!(
        (got.logprob as f64 - want).abs() <= TOLERANCE,
        "{what}: the logprob of the chosen token {token} is {}, expected {want}",
        got.logprob
    );
    assert_eq!(got.top.len(), top, "{what}: top_logprobs asked for {top}");
    let mut ranked: Vec<u32> = (0..expected.len() as u32).collect();
    ranked.sort_by(|&a, &b| expected[b as usize].total_cmp(&expected[a as usize]));
    for (rank, &(alternative, logprob)) in got.top.iter().enumerate() {
        let want = expected[alternative as usize];
        assert!(
            (logprob as f64 - want).abs() <= TOLERANCE,
            "{what}: top {rank} is token {alternative} with logprob {logprob}, its logprob is {want}"
        );
        let want_rank = expected[ranked[rank] as usize];
        assert!(
            (logprob as f64 - want_rank).abs() <= TOLERANCE,
            "{what}: top {rank} has logprob {logprob}; the {rank}-th most likely token ({}) has {want_rank} (top: {:?})",
            ranked[rank],
            got.top
        );
    }
}

/// Four requests batched: greedy with 5 alternatives, sampled with 20 (OpenAI's most), greedy
/// with none, and one asking for no log-probabilities. Each token's log-probability is that of
/// the raw logits (not the sampler's tempered ones): the first against transformers' logits of
/// the prompt, every token against a lone forward of the prompt and the tokens before it.
#[rstest]
#[case::roomy(config(8, 512, 256))]
#[case::tight(config(2, 6, 4))]
fn task_4_logprobs_are_the_log_softmax_of_the_logits(
    #[values("llama-tiny", "qwen3-tiny")] model_name: &str,
    #[case] config: continuous_batching::SchedulerConfig,
) {
    let (model, reference) = tiny(model_name);
    let sampled = SamplingParams {
        temperature: 0.7,
        seed: 11,
        ..SamplingParams::default()
    };
    // (prompt index, top alternatives asked, sampling)
    let plan = [
        (2, Some(5), SamplingParams::default()),
        (1, Some(20), sampled),
        (0, Some(0), SamplingParams::default()),
        (1, None, SamplingParams::default()),
    ];
    let mut driver = Driver::new(&model, config);
    for (id, &(prompt, top, sampling)) in plan.iter().enumerate() {
        let mut request = request(id as u64, &seq(&reference, prompt), 5);
        request.logprobs = top;
        request.sampling = sampling;
        driver.add(request);
    }
    let mut received: BTreeMap<u64, Vec<(u32, Option<TokenLogprobs>)>> = BTreeMap::new();
    while !driver.scheduler.is_idle() {
        assert!(driver.steps < 100, "the scheduler did not finish");
        for event in driver.step() {
            if let Event::Token {
                id,
                token,
                logprobs,
            } = event
            {
                received.entry(id).or_default().push((token, logprobs));
            }
        }
    }
    for (id, &(prompt, top, _)) in plan.iter().enumerate() {
        let tokens = &received[&(id as u64)];
        assert_eq!(tokens.len(), 5, "{model_name}: request {id}'s tokens");
        let Some(top) = top else {
            assert!(
                tokens.iter().all(|(_, logprobs)| logprobs.is_none()),
                "{model_name}: request {id} asked for no logprobs, yet got {tokens:?}"
            );
            continue;
        };
        let mut sequence = seq(&reference, prompt);
        let transformers = reference[&format!("seq{prompt}.logits")].index(-1);
        let transformers = log_softmax(transformers.as_slice::<f32>());
        for (index, (token, logprobs)) in tokens.iter().enumerate() {
            let what = format!("{model_name}, {config:?}: request {id}'s token {index}");
            let got = logprobs
                .as_ref()
                .unwrap_or_else(|| panic!("{what}: it asked for logprobs, the event has none"));
            if index == 0 {
                check(
                    got,
                    *token,
                    top,
                    &transformers,
                    &format!("{what} vs transformers"),
                );
            }
            let alone = log_softmax(&last_logits(&model, &sequence));
            check(
                got,
                *token,
                top,
                &alone,
                &format!("{what} vs a lone forward"),
            );
            sequence.push(*token);
        }
    }
}
