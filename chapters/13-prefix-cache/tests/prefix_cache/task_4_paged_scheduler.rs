//! Task 4: the paged scheduler: admission by free blocks, prefix sharing, preemption.

use crate::harness::{alone, drive, load_model, paged_config, request, tokens, BLOCK};
use continuous_batching::TokenLogprobs;
use mlx_rs::{ops::indexing::IndexOp, Array};
use prefix_cache::{Event, FinishReason, PagedScheduler};
use rstest::rstest;
use test_support::{expect_ok as ok, fixture_path, load_fixture, log_softmax, token_ids as ids};

const TINY: [&str; 3] = ["llama-tiny", "qwen2-tiny", "qwen3-tiny"];

/// The fixtures' three prompts (1, 7 and 16 tokens) after a common 23-token "system prompt".
fn prompts_with_a_shared_prefix(model_name: &str) -> Vec<Vec<u32>> {
    let reference = load_fixture(&format!("{model_name}/reference.safetensors"));
    let seq = |index: usize| ids(&reference[&format!("seq{index}.tokens")]);
    let system: Vec<u32> = [seq(2), seq(1)].concat(); // 23 tokens
    (0..3)
        .map(|index| [system.clone(), seq(index)].concat())
        .collect()
}

#[rstest]
fn task_4_greedy_requests_match_transformers(
    #[values("llama-tiny", "qwen2-tiny", "qwen3-tiny")] model_name: &str,
) {
    let model = load_model(&fixture_path(model_name));
    let reference = load_fixture(&format!("{model_name}/reference.safetensors"));
    let mut scheduler = ok(
        PagedScheduler::new(&model, paged_config(32, true)),
        "PagedScheduler::new",
    );
    let arrivals = (0..3)
        .map(|index| {
            (
                index,
                request(
                    index as u64,
                    &ids(&reference[&format!("seq{index}.tokens")]),
                    16,
                ),
            )
        })
        .collect();
    let outcomes = drive(&mut scheduler, arrivals, |_, _| {});
    for index in 0..3u64 {
        let expected = ids(&reference[&format!("seq{index}.greedy_continuation")]);
        assert_eq!(
            outcomes[&index].tokens, expected,
            "{model_name}: seq{index} through the paged scheduler vs transformers"
        );
        assert_eq!(outcomes[&index].finished, Some(FinishReason::Length));
    }
}

#[rstest]
fn task_4_shared_prefixes_give_what_each_request_gets_alone(
    #[values("llama-tiny", "qwen2-tiny", "qwen3-tiny")] model_name: &str,
    #[values(true, false)] prefix_caching: bool,
) {
    let model = load_model(&fixture_path(model_name));
    let prompts = prompts_with_a_shared_prefix(model_name);
    let mut scheduler = ok(
        PagedScheduler::new(&model, paged_config(32, prefix_caching)),
        "PagedScheduler::new",
    );
    // The first request runs alone long enough to fill and register the shared blocks; the
    // others arrive while it decodes.
    let arrivals = vec![
        (0, request(0, &prompts[0], 12)),
        (3, request(1, &prompts[1], 12)),
        (3, request(2, &prompts[2], 12)),
    ];
    let mut cached = std::collections::BTreeMap::new();
    let outcomes = drive(&mut scheduler, arrivals, |scheduler, _| {
        for id in 0..3 {
            if let Some(tokens) = scheduler.cached_tokens(id) {
                cached.insert(id, tokens);
            }
        }
    });
    for (id, prompt) in prompts.iter().enumerate() {
        let expected = alone(&model, model_name, prompt, 12);
        assert_eq!(outcomes[&(id as u64)].tokens, expected, "{model_name}: request {id} (prefix caching {prefix_caching}) vs chapter 8's cache alone");
    }
    let expected_cached = if prefix_caching {
        [0, BLOCK, BLOCK]
    } else {
        [0, 0, 0]
    };
    assert_eq!(
        cached.values().copied().collect::<Vec<_>>(),
        expected_cached,
        "cached prompt tokens per request (the 23-token prefix fills one block)"
    );
    let stats = scheduler.cache().stats();
    assert_eq!(
        stats.hit_tokens,
        expected_cached.iter().sum::<usize>(),
        "hit tokens"
    );
    assert_eq!(
        stats.hit_tokens + stats.miss_tokens,
        prompts.iter().map(Vec::len).sum::<usize>(),
        "every prompt token is a hit or a miss"
    );
    assert_eq!(
        scheduler.cache().available(),
        32,
        "every block is free or evictable once all have finished"
    );
}

#[test]
fn task_4_a_repeated_prompt_runs_only_its_last_token() {
    let model_name = TINY[0];
    let model = load_model(&fixture_path(model_name));
    let prompt = tokens(10, 2 * BLOCK); // exactly two blocks
    let mut scheduler = ok(
        PagedScheduler::new(&model, paged_config(16, true)),
        "PagedScheduler::new",
    );
    let first = drive(&mut scheduler, vec![(0, request(0, &prompt, 8))], |_, _| {});
    let mut cached = None;
    let second = drive(
        &mut scheduler,
        vec![(0, request(1, &prompt, 8))],
        |scheduler, _| {
            cached = cached.or(scheduler.cached_tokens(1));
        },
    );
    assert_eq!(
        cached,
        Some(2 * BLOCK - 1),
        "all but the last prompt token come from the cache"
    );
    let expected = alone(&model, model_name, &prompt, 8);
    assert_eq!(first[&0].tokens, expected, "the first run");
    assert_eq!(
        second[&1].tokens, expected,
        "the run from the cache (its last block copied before writing)"
    );
}

#[rstest]
fn task_4_a_small_pool_preempts_and_still_gives_the_same_tokens(
    #[values("llama-tiny", "qwen2-tiny", "qwen3-tiny")] model_name: &str,
) {
    let model = load_model(&fixture_path(model_name));
    let prompts: Vec<Vec<u32>> = (0..3).map(|i| tokens(20 + 50 * i, 20)).collect();
    // 3 requests of 20 + 30 tokens need 4 blocks each; 8 blocks hold two at a time at most.
    let mut scheduler = ok(
        PagedScheduler::new(&model, paged_config(8, true)),
        "PagedScheduler::new",
    );
    let arrivals = prompts
        .iter()
        .enumerate()
        .map(|(id, prompt)| (0, request(id as u64, prompt, 30)))
        .collect();
    let outcomes = drive(&mut scheduler, arrivals, |scheduler, _| {
        assert!(scheduler.cache().pool().num_used() <= 8);
    });
    assert!(
        scheduler.preemptions() > 0,
        "the pool is too small for all three: some request must be preempted"
    );
    for (id, prompt) in prompts.iter().enumerate() {
        assert_eq!(
            outcomes[&(id as u64)].tokens,
            alone(&model, model_name, prompt, 30),
            "{model_name}: request {id} after preemptions"
        );
    }
}

#[test]
fn task_4_a_request_waits_until_the_pool_has_its_blocks() {
    let model = load_model(&fixture_path(TINY[0]));
    let mut scheduler = ok(
        PagedScheduler::new(&model, paged_config(5, false)),
        "PagedScheduler::new",
    );
    ok(scheduler.add(request(0, &tokens(1, 40), 4)), "add"); // 3 blocks + 1 to spare
    ok(scheduler.add(request(1, &tokens(100, 40), 4)), "add");
    ok(scheduler.step(), "step");
    assert_eq!(
        (scheduler.running(), scheduler.waiting()),
        (1, 1),
        "only one request's blocks fit"
    );
}

#[test]
fn task_4_a_request_for_no_tokens_finishes_at_once_and_cancel_frees_blocks() {
    let model = load_model(&fixture_path(TINY[0]));
    let mut scheduler = ok(
        PagedScheduler::new(&model, paged_config(8, true)),
        "PagedScheduler::new",
    );
    let outcomes = drive(
        &mut scheduler,
        vec![(0, request(0, &tokens(1, 5), 0))],
        |_, _| {},
    );
    assert_eq!(outcomes[&0].tokens, Vec::<u32>::new());
    assert_eq!(outcomes[&0].finished, Some(FinishReason::Length));
    ok(scheduler.add(request(1, &tokens(1, 40), 50)), "add");
    ok(scheduler.step(), "step");
    assert_eq!(scheduler.running(), 1);
    assert!(
        ok(scheduler.cancel(1), "cancel"),
        "a running request is cancelled"
    );
    assert_eq!(
        scheduler.cache().available(),
        8,
        "its blocks are free or evictable"
    );
    assert!(scheduler.is_idle());
}

/// Requests that ask for log-probabilities get those of the raw logits with every token, in
/// decode steps and in the prefill that reads a shared prefix from the cache: each equals an
/// f64 log-softmax of a lone forward of the prompt and the tokens before it; the alternatives
/// are the likeliest, most likely first. A request that asks for none gets none.
#[rstest]
fn task_4_logprobs_come_from_the_raw_logits(
    #[values("llama-tiny", "qwen3-tiny")] model_name: &str,
) {
    let model = load_model(&fixture_path(model_name));
    let prompts = prompts_with_a_shared_prefix(model_name);
    let mut scheduler = ok(
        PagedScheduler::new(&model, paged_config(32, true)),
        "PagedScheduler::new",
    );
    let asked = [Some(3), Some(0), None];
    let arrivals = asked
        .iter()
        .enumerate()
        .map(|(id, &top)| {
            let mut request = request(id as u64, &prompts[id], 6);
            request.logprobs = top;
            (id, request)
        })
        .collect();
    let mut received: Vec<(u64, u32, Option<TokenLogprobs>)> = Vec::new();
    drive(&mut scheduler, arrivals, |_, events| {
        for event in events {
            if let Event::Token {
                id,
                token,
                logprobs,
            } = event
            {
                received.push((*id, *token, logprobs.clone()));
            }
        }
    });
    let mut sequences = prompts.clone();
    for (id, token, logprobs) in received {
        let sequence = &mut sequences[id as usize];
        let what = format!(
            "{model_name}: request {id}, token {token} after {} tokens",
            sequence.len()
        );
        match (asked[id as usize], logprobs) {
            (None, None) => {}
            (Some(top), Some(got)) => {
                let input = Array::from_slice(sequence, &[1, sequence.len() as i32]);
                let logits = ok(
                    model.forward(&input, &mut model.new_cache()),
                    "Model::forward",
                );
                let expected = log_softmax(logits.index((0, -1)).as_slice::<f32>());
                let close = |got: f32, want: f64| (got as f64 - want).abs() <= 1e-4;
                assert!(
                    close(got.logprob, expected[token as usize]),
                    "{what}: {got:?}"
                );
                let mut ranked = expected.clone();
                ranked.sort_by(|a, b| b.total_cmp(a));
                assert_eq!(got.top.len(), top, "{what}: {got:?}");
                for (rank, &(alternative, logprob)) in got.top.iter().enumerate() {
                    assert!(
                        close(logprob, expected[alternative as usize]) && close(logprob, ranked[rank]),
                        "{what}: alternative {rank} ({alternative}, {logprob}) is not the {rank}-th likeliest"
                    );
                }
            }
            (asked, got) => panic!("{what}: asked for {asked:?}, got {got:?}"),
        }
        sequence.push(token);
    }
}
