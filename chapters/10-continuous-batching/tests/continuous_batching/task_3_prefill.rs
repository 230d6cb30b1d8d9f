//! Task 3: prefill and admission

use crate::harness::{config, continuation, request, seq, tiny, Driver};
use continuous_batching::{Event, FinishReason, Scheduler, SchedulerConfig};
use rstest::rstest;

/// seq0, seq1 and seq2 (1, 7 and 16 tokens) at once, one token each: the first token comes from
/// the prompt's last logits, however the prompt was cut into chunks.
#[rstest]
#[case::whole_prompts(config(16, 512, 256))]
#[case::chunks_of_4(config(16, 512, 4))]
#[case::chunks_of_5_in_a_budget_of_6(config(16, 6, 5))]
#[case::one_at_a_time(config(1, 512, 256))]
fn task_3_first_tokens_match_transformers(
    #[values("llama-tiny", "qwen2-tiny", "qwen3-tiny")] model_name: &str,
    #[case] config: SchedulerConfig,
) {
    let (model, reference) = tiny(model_name);
    let mut driver = Driver::new(&model, config);
    let arrivals = (0..3)
        .map(|index| (1, request(index as u64, &seq(&reference, index), 1)))
        .collect();
    driver.run(arrivals);
    for index in 0..3 {
        let expected = &continuation(&reference, index)[..1];
        let what = format!("{model_name}, seq{index} alone asking for 1 token, {config:?}");
        driver.check(index as u64, expected, FinishReason::Length, &what);
    }
    driver.check_idle(model_name);
}

/// When each request gets its first token: a prompt runs at most `prefill_chunk` tokens per
/// step, and all prompts together at most `token_budget`, oldest first.
#[rstest]
#[case::a_whole_prompt(&[2], 512, 256, &[1])]
#[case::chunks_of_4(&[2], 512, 4, &[4])]
#[case::chunks_of_5_the_last_one_short(&[2], 512, 5, &[4])]
#[case::a_budget_below_the_chunk(&[2], 3, 8, &[6])]
#[case::a_budget_of_one(&[1], 1, 256, &[7])]
#[case::two_prompts_share_a_step(&[1, 2], 10, 8, &[1, 3])]
#[case::the_oldest_first(&[2, 1], 10, 8, &[2, 3])]
fn task_3_prefill_stays_within_the_chunk_and_the_budget(
    #[case] sequences: &[usize],
    #[case] token_budget: usize,
    #[case] prefill_chunk: usize,
    #[case] first_token_steps: &[usize],
) {
    let (model, reference) = tiny("llama-tiny");
    let config = config(16, token_budget, prefill_chunk);
    let mut driver = Driver::new(&model, config);
    let arrivals = sequences
        .iter()
        .enumerate()
        .map(|(id, &index)| (1, request(id as u64, &seq(&reference, index), 1)))
        .collect();
    driver.run(arrivals);
    for (id, &index) in sequences.iter().enumerate() {
        let what = format!(
            "prompts of {:?} tokens, budget {token_budget}, chunks of {prefill_chunk}",
            sequences
                .iter()
                .map(|&index| seq(&reference, index).len())
                .collect::<Vec<_>>()
        );
        driver.check(
            id as u64,
            &continuation(&reference, index)[..1],
            FinishReason::Length,
            &what,
        );
        assert_eq!(
            driver.outcome(id as u64).token_steps,
            [first_token_steps[id]],
            "{what}: the step at which request {id} (seq{index}, {} tokens) gets its first token",
            seq(&reference, index).len()
        );
    }
    driver.check_idle("after the last prompt");
}

/// Three 16-token prompts, each taking two steps of prefill (chunks of 8), one token each:
/// requests start in the order they came, and no more than `max_running` at once.
#[rstest]
#[case::one_at_a_time(1, &[2, 4, 6], &[(2, 1), (2, 0), (1, 1), (1, 0), (0, 1), (0, 0)])]
#[case::two_at_a_time(2, &[2, 2, 4], &[(1, 2), (1, 0), (0, 1), (0, 0)])]
#[case::all_at_once(3, &[2, 2, 2], &[(0, 3), (0, 0)])]
fn task_3_requests_start_first_come_first_served(
    #[case] max_running: usize,
    #[case] first_token_steps: &[usize],
    #[case] waiting_and_running: &[(usize, usize)],
) {
    let (model, reference) = tiny("llama-tiny");
    let mut driver = Driver::new(&model, config(max_running, 64, 8));
    let prompt = seq(&reference, 2);
    for id in 0..3 {
        driver.add(request(id, &prompt, 1));
    }
    let counts = |driver: &Driver| (driver.scheduler.waiting(), driver.scheduler.running());
    assert_eq!(
        counts(&driver),
        (3, 0),
        "(waiting, running) before the first step"
    );
    for (step, &expected) in waiting_and_running.iter().enumerate() {
        driver.step();
        assert_eq!(
            counts(&driver),
            expected,
            "(waiting, running) after step {} with max_running {max_running}",
            step + 1
        );
    }
    for (id, &at) in first_token_steps.iter().enumerate() {
        driver.check(
            id as u64,
            &continuation(&reference, 2)[..1],
            FinishReason::Length,
            &format!("max_running {max_running}"),
        );
        assert_eq!(
            driver.outcome(id as u64).token_steps,
            [at],
            "max_running {max_running}: the step at which request {id} (added {id}th) gets its token"
        );
    }
    driver.check_idle(&format!("max_running {max_running}"));
}

#[test]
fn task_3_a_request_for_no_tokens_finishes_at_once() {
    let (model, reference) = tiny("llama-tiny");
    let mut driver = Driver::new(&model, SchedulerConfig::default());
    driver.add(request(0, &seq(&reference, 1), 0));
    driver.add(request(1, &seq(&reference, 2), 1));
    let events = driver.step();
    assert!(
        events.contains(&Event::Finished {
            id: 0,
            reason: FinishReason::Length
        }),
        "a request for 0 tokens should finish (Length) in the first step, with no token: {events:?}"
    );
    driver.run(Vec::new());
    driver.check(0, &[], FinishReason::Length, "max_new_tokens 0");
    driver.check(
        1,
        &continuation(&reference, 2)[..1],
        FinishReason::Length,
        "beside a request for 0 tokens",
    );
    driver.check_idle("max_new_tokens 0");
}

#[test]
fn task_3_a_stop_token_as_the_first_token_is_not_emitted() {
    let (model, reference) = tiny("llama-tiny");
    let mut driver = Driver::new(&model, SchedulerConfig::default());
    let first = continuation(&reference, 1)[0];
    let mut stopping = request(0, &seq(&reference, 1), 5);
    stopping.stop_token_ids = vec![first];
    driver.add(stopping);
    driver.add(request(1, &seq(&reference, 2), 1));
    driver.run(Vec::new());
    driver.check(
        0,
        &[],
        FinishReason::Stop,
        &format!("seq1 with stop token {first}, its first greedy token"),
    );
    assert_eq!(
        driver.outcome(0).finished.map(|(_, step)| step),
        Some(1),
        "the request should finish in the step that chose its stop token"
    );
    driver.check(
        1,
        &continuation(&reference, 2)[..1],
        FinishReason::Length,
        "beside a request that stopped",
    );
    driver.check_idle("after a stop token");
}

#[test]
fn task_3_an_empty_prompt_is_rejected() {
    let (model, reference) = tiny("llama-tiny");
    let mut driver = Driver::new(&model, SchedulerConfig::default());
    assert!(
        driver.scheduler.add(request(0, &[], 4)).is_err(),
        "a request with an empty prompt must be an Err: there are no logits to choose from"
    );
    assert_eq!(
        driver.scheduler.waiting(),
        0,
        "a rejected request must not wait"
    );
    driver.run(vec![(1, request(1, &seq(&reference, 1), 1))]);
    driver.check(
        1,
        &continuation(&reference, 1)[..1],
        FinishReason::Length,
        "after a rejected request",
    );
}

/// A limit of 0 would never run anything; the smallest limits, 1, must still work.
#[rstest]
#[case::max_running(|limit| config(limit, 512, 256))]
#[case::token_budget(|limit| config(16, limit, 256))]
#[case::prefill_chunk(|limit| config(16, 512, limit))]
fn task_3_zero_limits_are_an_error_and_one_works(#[case] with_limit: fn(usize) -> SchedulerConfig) {
    let (model, reference) = tiny("llama-tiny");
    let zero = with_limit(0);
    assert!(
        Scheduler::new(&model, zero).is_err(),
        "Scheduler::new({zero:?}) must be an Err"
    );
    let one = with_limit(1);
    let mut driver = Driver::new(&model, one);
    driver.run(vec![
        (1, request(0, &seq(&reference, 1), 1)),
        (1, request(1, &seq(&reference, 2), 1)),
    ]);
    for (id, index) in [(0, 1), (1, 2)] {
        driver.check(
            id,
            &continuation(&reference, index)[..1],
            FinishReason::Length,
            &format!("{one:?}"),
        );
    }
    driver.check_idle(&format!("{one:?}"));
}
