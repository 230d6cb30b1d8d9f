//! Task 4: a draft model over its own cache, rewound to what the target kept.

use crate::harness::{
    options, plain_greedy, reference_sequence, tiny_model, tokenizer_at, TINY_VOCAB,
};
use mlx_rs::ops::indexing::IndexOp;
use rstest::rstest;
use speculative_decoding::{
    probabilities, CachedModel, Drafter, LanguageModel, ModelDrafter, SamplingParams,
    SpeculativeError,
};
use test_support::{assert_allclose, expect_ok as ok, fixture_path, Tolerance};

/// Chapter 8's cache generating greedily after `sequence` alone: what a greedy draft must be.
fn alone(model_name: &str, sequence: &[u32], count: usize) -> Vec<u32> {
    let model = tiny_model(model_name);
    let tokenizer = tokenizer_at(&fixture_path(model_name));
    let mut options = options(count);
    options.ignore_eos = true;
    plain_greedy(&model, &tokenizer, sequence, &options).tokens
}

/// The drafter's model is the target here, so a greedy draft of the fixtures' prompts is
/// transformers' greedy continuation.
#[rstest]
fn task_4_greedy_draft_is_transformers_continuation(
    #[values("llama-tiny", "qwen2-tiny", "qwen3-tiny")] model_name: &str,
    #[values(0, 2)] index: usize,
) {
    let model = tiny_model(model_name);
    let (prompt, continuation) = reference_sequence(model_name, index);
    let mut drafter = ok(
        ModelDrafter::new(&model, TINY_VOCAB, SamplingParams::default()),
        "ModelDrafter::new",
    );
    let draft = ok(drafter.propose(&prompt, 8), "ModelDrafter::propose");
    assert_eq!(
        draft.tokens,
        continuation[..8],
        "{model_name}: greedy draft of seq{index}"
    );
    assert!(draft.probabilities.is_none(), "a greedy draft is one-hot");
    assert_eq!(
        drafter.cache()[0].offset() as usize,
        prompt.len() + 7,
        "the cache holds the prompt and the draft but its last token"
    );
    assert_a_draft_model_must_share_the_vocabulary();
}

/// The target keeps some draft tokens and corrects the next; later it keeps a whole draft and
/// adds a bonus token; then a new prompt: each time the drafter rewinds its cache to what it
/// shares with the sequence and drafts what chapter 8's cache would generate from scratch.
#[rstest]
fn task_4_the_drafter_rewinds_to_the_sequence(
    #[values("llama-tiny", "qwen2-tiny", "qwen3-tiny")] model_name: &str,
) {
    let model = tiny_model(model_name);
    let (prompt, _) = reference_sequence(model_name, 1);
    let mut drafter = ok(
        ModelDrafter::new(&model, TINY_VOCAB, SamplingParams::default()),
        "ModelDrafter::new",
    );
    let first = ok(drafter.propose(&prompt, 4), "propose").tokens;
    // Two kept, the third corrected.
    let mut sequence = [prompt.clone(), first[..2].to_vec()].concat();
    sequence.push((first[2] + 1) % TINY_VOCAB as u32);
    let second = ok(drafter.propose(&sequence, 4), "propose after a rejection").tokens;
    assert_eq!(
        second,
        alone(model_name, &sequence, 4),
        "{model_name}: draft after keeping 2 of 4 and a correction"
    );
    // All four kept and a bonus token: two tokens the drafter has not run.
    sequence.extend_from_slice(&second);
    sequence.push(7);
    let third = ok(
        drafter.propose(&sequence, 3),
        "propose after a full acceptance",
    )
    .tokens;
    assert_eq!(
        third,
        alone(model_name, &sequence, 3),
        "{model_name}: draft after keeping a whole draft and a bonus token"
    );
    let (other, _) = reference_sequence(model_name, 2);
    let fourth = ok(drafter.propose(&other, 5), "propose on a new prompt").tokens;
    assert_eq!(
        fourth,
        alone(model_name, &other, 5),
        "{model_name}: draft of an unrelated prompt"
    );
    assert_eq!(drafter.cache()[0].offset() as usize, other.len() + 4);
}

/// With temperature the drafter samples and reports each row's distribution: the sampler's
/// distribution over chapter 8's logits after the sequence and the tokens drafted before it.
#[rstest]
#[case::temperature(SamplingParams { temperature: 0.8, seed: 3, ..SamplingParams::default() })]
#[case::filters_and_penalty(SamplingParams {
    temperature: 1.2,
    top_k: Some(40),
    top_p: Some(0.9),
    repetition_penalty: Some(1.3),
    seed: 4,
    ..SamplingParams::default()
})]
fn task_4_sampled_draft_reports_the_sampler_distribution(#[case] params: SamplingParams) {
    let model = tiny_model("qwen2-tiny");
    let (prompt, _) = reference_sequence("qwen2-tiny", 2);
    let mut drafter = ok(
        ModelDrafter::new(&model, TINY_VOCAB, params),
        "ModelDrafter::new",
    );
    let draft = ok(drafter.propose(&prompt, 5), "ModelDrafter::propose");
    assert_eq!(draft.tokens.len(), 5);
    let rows = draft
        .probabilities
        .expect("a sampled draft reports its distributions");
    assert_eq!(rows.shape(), [5, TINY_VOCAB]);
    let mut sequence = prompt.clone();
    for (i, &token) in draft.tokens.iter().enumerate() {
        let logits = ok(
            CachedModel::new(&model).next_token_logits(&sequence),
            "CachedModel::next_token_logits",
        ); // [V]
        let expected = ok(probabilities(&logits, &sequence, &params), "probabilities");
        let row = rows.index(i as i32);
        assert_allclose(
            &row,
            &expected,
            Tolerance {
                rtol: 1e-4,
                atol: 1e-6,
            },
            &format!("draft row {i}"),
        );
        let q = ok(
            row.index(token as i32).try_item_cast::<f32>(),
            "a probability",
        );
        assert!(
            q > 0.0,
            "row {i}: token {token} was drawn with probability 0"
        );
        sequence.push(token);
    }
}

/// The given constructor refuses a drafter of another vocabulary (checked after your drafter's
/// greedy draft, in the test above).
fn assert_a_draft_model_must_share_the_vocabulary() {
    let model = tiny_model("llama-tiny");
    match ModelDrafter::new(&model, 49152, SamplingParams::default()) {
        Err(SpeculativeError::VocabMismatch { target, draft }) => {
            assert_eq!((target, draft), (49152, TINY_VOCAB))
        }
        Err(other) => panic!("expected VocabMismatch, got {other}"),
        Ok(_) => panic!("a 512-token drafter for a 49152-token target must be refused"),
    }
}
