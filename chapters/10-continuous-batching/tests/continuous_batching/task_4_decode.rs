//! Task 4: decoding the batch

use crate::harness::{config, continuation, load_model, request, seq, tiny, Driver};
use continuous_batching::{
    generate, greedy, CachedModel, FinishReason, GenerationOptions, Model, SchedulerConfig,
    Tokenizer,
};
use rstest::rstest;
use test_support::{
    expect_ok as ok, fetched_model_dir, fixture_path, load_fixture, token_ids as ids,
};

const SMOLLM2: &str = "smollm2-135m-instruct";

/// Greedy tokens for `prompt`, generated alone by chapter 8 (`generate` on a `CachedModel`),
/// which stops on the model's EOS ids without emitting them, as a request with them as its stop
/// tokens does.
fn alone(model: &Model, tokenizer: &Tokenizer, prompt: &[u32], max_new_tokens: usize) -> Vec<u32> {
    let options = GenerationOptions {
        max_new_tokens,
        stop_strings: Vec::new(),
        ignore_eos: false,
    };
    let generation = ok(
        generate(
            &mut CachedModel::new(model),
            tokenizer,
            prompt,
            &options,
            &mut greedy,
            &mut |_| {},
        ),
        "chapter 8's generate",
    );
    generation.tokens
}

/// A request of [`task_4_staggered_requests_match_generating_alone`].
struct Planned {
    /// Added right before this step.
    arrives: usize,
    prompt: Vec<u32>,
    max_new_tokens: usize,
    stop_token_ids: Vec<u32>,
    expected: Vec<u32>,
    reason: FinishReason,
    what: String,
}

/// Requests arrive at different steps with prompts of 1 to 16 tokens and ask for 3 to 16 tokens;
/// two have the same prompt. Each must get exactly the tokens it gets alone: transformers'
/// greedy continuation for seq0-2 (which never chose EOS), chapter 8's generation alone for the
/// others, which stop on EOS (llama-tiny's `seq1[..2]` chooses it after 4 tokens).
#[rstest]
#[case::roomy(config(16, 512, 256))]
#[case::tight(config(3, 6, 4))]
fn task_4_staggered_requests_match_generating_alone(
    #[values("llama-tiny", "qwen2-tiny", "qwen3-tiny")] model_name: &str,
    #[case] config: SchedulerConfig,
) {
    let (model, reference) = tiny(model_name);
    let tokenizer = ok(
        Tokenizer::load(&fixture_path(model_name)),
        "Tokenizer::load",
    );
    let from_transformers = |arrives: usize, index: usize, max_new_tokens: usize| Planned {
        arrives,
        prompt: seq(&reference, index),
        max_new_tokens,
        stop_token_ids: Vec::new(),
        expected: continuation(&reference, index)[..max_new_tokens].to_vec(),
        reason: FinishReason::Length,
        what: format!("seq{index} (transformers' greedy continuation)"),
    };
    let from_alone = |arrives: usize, prompt: &[u32], name: &str, max_new_tokens: usize| {
        let expected = alone(&model, &tokenizer, prompt, max_new_tokens);
        Planned {
            arrives,
            prompt: prompt.to_vec(),
            max_new_tokens,
            stop_token_ids: model.config().eos_token_ids.clone(),
            reason: if expected.len() < max_new_tokens {
                FinishReason::Stop
            } else {
                FinishReason::Length
            },
            expected,
            what: format!("{name} (chapter 8's generate, alone, stopping on EOS)"),
        }
    };
    let (seq1, seq2) = (seq(&reference, 1), seq(&reference, 2));
    let plan = [
        from_transformers(1, 2, 16),
        from_transformers(1, 0, 6),
        from_transformers(3, 1, 12),
        from_alone(5, &seq2[4..13], "seq2[4..13]", 10),
        from_alone(6, &seq2[9..], "seq2[9..]", 3),
        from_transformers(6, 1, 16),
        from_alone(9, &seq1[..2], "seq1[..2]", 8),
    ];
    let mut driver = Driver::new(&model, config);
    driver.run(
        plan.iter()
            .enumerate()
            .map(|(id, planned)| {
                let mut request = request(id as u64, &planned.prompt, planned.max_new_tokens);
                request.stop_token_ids = planned.stop_token_ids.clone();
                (planned.arrives, request)
            })
            .collect(),
    );
    for (id, planned) in plan.iter().enumerate() {
        let what = format!(
            "{model_name}, {config:?}: request {id}, {} tokens of {}, added before step {}",
            planned.max_new_tokens, planned.what, planned.arrives
        );
        driver.check(id as u64, &planned.expected, planned.reason, &what);
    }
    driver.check_idle(model_name);
}

/// SmolLM2's prompts, arriving at different steps, against transformers' greedy continuations.
/// Prompts 0 and 5 stop before the steps where transformers suppressed EOS (29 and 22).
#[test]
fn task_4_smollm2_staggered_requests_match_transformers() {
    let Some(dir) = fetched_model_dir(SMOLLM2) else {
        return;
    };
    let model = load_model(&dir);
    let reference = load_fixture("smollm2/reference.safetensors");
    // (prompt, added before step, max_new_tokens)
    let plan = [(3, 1, 32), (1, 1, 24), (0, 4, 20), (2, 6, 10), (5, 7, 16)];
    let config = config(4, 40, 16);
    let mut driver = Driver::new(&model, config);
    driver.run(
        plan.iter()
            .map(|&(prompt, arrives, max_new_tokens)| {
                let tokens = ids(&reference[&format!("prompt{prompt}.tokens")]);
                (arrives, request(prompt, &tokens, max_new_tokens))
            })
            .collect(),
    );
    for (prompt, arrives, max_new_tokens) in plan {
        let expected = ids(&reference[&format!("prompt{prompt}.greedy_continuation")]);
        let what = format!(
            "SmolLM2, {config:?}: prompt {prompt} added before step {arrives}, {max_new_tokens} tokens"
        );
        driver.check(
            prompt,
            &expected[..max_new_tokens],
            FinishReason::Length,
            &what,
        );
    }
    driver.check_idle("SmolLM2");
}

/// A request decodes one token per step while a long prompt prefills beside it, 4 tokens per
/// step (a budget of 5, one of which the decoding request takes).
#[test]
fn task_4_decoding_goes_on_while_a_long_prompt_prefills() {
    let (model, reference) = tiny("llama-tiny");
    let mut driver = Driver::new(&model, config(4, 5, 8));
    driver.run(vec![
        (1, request(0, &seq(&reference, 1), 12)),
        (3, request(1, &seq(&reference, 2), 4)),
    ]);
    let what = "budget 5, chunks of 8: seq1 (7 tokens) from step 1, seq2 (16 tokens) from step 3";
    driver.check(
        0,
        &continuation(&reference, 1)[..12],
        FinishReason::Length,
        what,
    );
    driver.check(
        1,
        &continuation(&reference, 2)[..4],
        FinishReason::Length,
        what,
    );
    // seq1: 5 prompt tokens in step 1, 2 and its first token in step 2, then one token per step.
    assert_eq!(
        driver.outcome(0).token_steps,
        (2..14).collect::<Vec<_>>(),
        "{what}: the steps of request 0's tokens (one per step, never paused by the prefill)"
    );
    // seq2: 4 prompt tokens per step in steps 3 to 6 (the decoding request takes 1 of the 5).
    assert_eq!(
        driver.outcome(1).token_steps,
        (6..10).collect::<Vec<_>>(),
        "{what}: the steps of request 1's tokens"
    );
    driver.check_idle(what);
}

/// A request that chooses one of its stop tokens leaves without emitting it; the others go on.
#[rstest]
fn task_4_requests_finish_on_a_stop_token_or_after_max_tokens(
    #[values("llama-tiny", "qwen2-tiny", "qwen3-tiny")] model_name: &str,
) {
    let (model, reference) = tiny(model_name);
    let expected = continuation(&reference, 2);
    // The first token from the third on that did not come before: the request stops there.
    let stop_at = (2..expected.len())
        .find(|&at| !expected[..at].contains(&expected[at]))
        .expect("a 16-token continuation has a new token after the second");
    let mut stopping = request(0, &seq(&reference, 2), 16);
    stopping.stop_token_ids = vec![expected[stop_at]];
    let mut driver = Driver::new(&model, SchedulerConfig::default());
    driver.run(vec![
        (1, request(1, &seq(&reference, 1), 16)),
        (1, stopping),
        (2, request(2, &seq(&reference, 0), 5)),
    ]);
    driver.check(
        0,
        &expected[..stop_at],
        FinishReason::Stop,
        &format!(
            "{model_name}: seq2 with stop token {} (its greedy token {stop_at})",
            expected[stop_at]
        ),
    );
    driver.check(
        1,
        &continuation(&reference, 1),
        FinishReason::Length,
        &format!("{model_name}: seq1, beside a request that stopped"),
    );
    driver.check(
        2,
        &continuation(&reference, 0)[..5],
        FinishReason::Length,
        &format!("{model_name}: seq0, 5 tokens"),
    );
    driver.check_idle(model_name);
}
