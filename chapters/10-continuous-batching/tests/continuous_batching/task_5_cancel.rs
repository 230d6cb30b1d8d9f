//! Task 5: Scheduler::cancel

use crate::harness::{config, continuation, request, seq, tiny, Driver};
use continuous_batching::{FinishReason, SchedulerConfig};
use rstest::rstest;
use test_support::expect_ok as ok;

fn cancel(driver: &mut Driver, id: u64) -> bool {
    ok(driver.scheduler.cancel(id), "Scheduler::cancel")
}

#[test]
fn task_5_cancel_a_waiting_request() {
    let (model, reference) = tiny("llama-tiny");
    let mut driver = Driver::new(&model, config(1, 512, 256));
    driver.add(request(0, &seq(&reference, 1), 4));
    driver.add(request(1, &seq(&reference, 2), 4));
    driver.add(request(2, &seq(&reference, 0), 3));
    driver.step();
    assert_eq!(driver.scheduler.waiting(), 2, "waiting before the cancel");
    assert!(
        cancel(&mut driver, 1),
        "cancelling a waiting request should return true"
    );
    assert_eq!(
        driver.scheduler.waiting(),
        1,
        "waiting after cancelling one of the two"
    );
    driver.run(Vec::new());
    let outcome = driver.outcome(1);
    assert!(
        outcome.tokens.is_empty() && outcome.finished.is_none(),
        "a cancelled waiting request never runs and has no event: {outcome:?}"
    );
    driver.check(
        0,
        &continuation(&reference, 1)[..4],
        FinishReason::Length,
        "request 0",
    );
    driver.check(
        2,
        &continuation(&reference, 0)[..3],
        FinishReason::Length,
        "request 2, after the one before it was cancelled",
    );
    assert!(
        !cancel(&mut driver, 1),
        "cancelling a request a second time should return false"
    );
    driver.check_idle("after a cancel");
}

#[test]
fn task_5_cancel_a_prefilling_request_frees_its_cache() {
    let (model, reference) = tiny("llama-tiny");
    let mut driver = Driver::new(&model, config(4, 512, 4));
    driver.add(request(0, &seq(&reference, 1), 6));
    driver.add(request(1, &seq(&reference, 2), 6));
    driver.step();
    driver.step();
    // Request 0 (7 tokens) is decoding; request 1 (16 tokens) has 8 of its prompt in its cache.
    assert_eq!(driver.scheduler.running(), 2, "running after two steps");
    let before = driver.scheduler.cache_bytes();
    assert!(
        cancel(&mut driver, 1),
        "cancelling a prefilling request should return true"
    );
    let after = driver.scheduler.cache_bytes();
    assert!(
        after < before,
        "cancelling a prefilling request should free its cache: cache_bytes {before} before, {after} after"
    );
    assert_eq!(driver.scheduler.running(), 1, "running after the cancel");
    driver.run(Vec::new());
    let outcome = driver.outcome(1);
    assert!(
        outcome.tokens.is_empty() && outcome.finished.is_none(),
        "request 1 was cancelled before its first token: it gets no event: {outcome:?}"
    );
    driver.check(
        0,
        &continuation(&reference, 1)[..6],
        FinishReason::Length,
        "beside a cancelled prefill",
    );
    driver.check_idle("after a cancel");
}

/// Three requests decoding together (seq0, seq1 and seq2, rows 0-2); one is cancelled after 4
/// steps. Its row leaves, memory shrinks, and the others still get exactly their tokens.
#[rstest]
#[case::the_first_row(0)]
#[case::the_middle_row(1)]
#[case::the_longest_row(2)]
fn task_5_cancel_a_decoding_request_frees_its_row(
    #[values("llama-tiny", "qwen3-tiny")] model_name: &str,
    #[case] cancelled: u64,
) {
    let (model, reference) = tiny(model_name);
    let mut driver = Driver::new(&model, SchedulerConfig::default());
    for index in 0..3 {
        driver.add(request(index, &seq(&reference, index as usize), 12));
    }
    for _ in 0..4 {
        driver.step();
    }
    let before = driver.scheduler.cache_bytes();
    assert!(
        cancel(&mut driver, cancelled),
        "cancelling a decoding request should return true"
    );
    let after = driver.scheduler.cache_bytes();
    assert!(
        after < before,
        "{model_name}: cancelling request {cancelled} should free its row of the batched cache: cache_bytes {before} before, {after} after"
    );
    assert_eq!(driver.scheduler.running(), 2, "running after the cancel");
    assert!(
        !cancel(&mut driver, cancelled),
        "cancelling request {cancelled} again should return false"
    );
    assert!(
        !cancel(&mut driver, 99),
        "cancelling a request that was never added should return false"
    );
    driver.run(Vec::new());
    for index in 0..3u64 {
        let expected = &continuation(&reference, index as usize)[..12];
        if index == cancelled {
            let outcome = driver.outcome(index);
            assert_eq!(
                outcome.tokens,
                &expected[..outcome.tokens.len()],
                "{model_name}: the tokens request {index} got before it was cancelled"
            );
            assert!(
                outcome.tokens.len() == 4 && outcome.finished.is_none(),
                "{model_name}: request {index}, cancelled after 4 steps, should have its 4 tokens and no Finished event: {outcome:?}"
            );
        } else {
            driver.check(
                index,
                expected,
                FinishReason::Length,
                &format!("{model_name}: request {index}, after request {cancelled} was cancelled"),
            );
        }
    }
    driver.check_idle(model_name);
}
