//! Task 1: EngineHandle::submit

use crate::harness::{greedy_params, limits, roomy, start, LONG_PROMPT, LONG_TOKENS};
use rstest::rstest;
use serving::SubmitError;

#[tokio::test(flavor = "multi_thread")]
async fn task_1_submit_returns_the_request_stream() {
    let server = start(roomy());
    let prompt = server.encode("The sea is wide,");
    let stream = server
        .engine
        .submit(greedy_params(prompt.clone(), 4))
        .unwrap_or_else(|error| panic!("submit of a valid request: {error:?}"));
    assert_eq!(
        stream.prompt_tokens,
        prompt.len(),
        "RequestStream::prompt_tokens is the prompt's length"
    );
    assert!(stream.id >= 1, "request ids start at 1, got {}", stream.id);
}

#[rstest]
#[case::empty_prompt(0, 4, 64, false)]
#[case::one_over_max_seq_len(5, 60, 64, false)]
#[case::far_over_max_seq_len(5, 1000, 64, false)]
#[case::exactly_max_seq_len(5, 59, 64, true)]
#[tokio::test(flavor = "multi_thread")]
async fn task_1_submit_checks_the_lengths(
    #[case] prompt_tokens: usize,
    #[case] max_new_tokens: usize,
    #[case] max_seq_len: usize,
    #[case] accepted: bool,
) {
    let server = start(limits(2, 2, max_seq_len));
    let prompt = server.encode("The sea is wide, the sea is deep")[..prompt_tokens].to_vec();
    let what = format!(
        "submit of {prompt_tokens} prompt tokens + {max_new_tokens} new ones with max_seq_len {max_seq_len}"
    );
    match server.engine.submit(greedy_params(prompt, max_new_tokens)) {
        Ok(_) if accepted => {}
        Ok(_) => panic!("{what} should be SubmitError::Invalid, got Ok"),
        Err(SubmitError::Invalid(message)) if !accepted => {
            assert!(!message.is_empty(), "{what}: the Invalid message is empty");
            if prompt_tokens > 0 {
                assert!(
                    message.contains(&max_seq_len.to_string()),
                    "{what}: the message should name the limit {max_seq_len}: {message:?}"
                );
            }
        }
        Err(error) => panic!(
            "{what} should be {}, got Err({error:?})",
            if accepted {
                "Ok"
            } else {
                "SubmitError::Invalid"
            }
        ),
    }
}

#[rstest]
#[case::one_slot_no_queue(1, 0)]
#[case::one_slot_one_waiting(1, 1)]
#[case::two_slots_two_waiting(2, 2)]
#[tokio::test(flavor = "multi_thread")]
async fn task_1_submit_is_busy_beyond_max_running_plus_max_waiting(
    #[case] max_running: usize,
    #[case] max_waiting: usize,
) {
    let server = start(limits(max_running, max_waiting, 2048));
    let prompt = server.encode(LONG_PROMPT);
    let capacity = max_running + max_waiting;
    // Long requests, kept (not read): none of them finishes during the test.
    let mut streams = Vec::new();
    for admitted in 0..capacity {
        match server
            .engine
            .submit(greedy_params(prompt.clone(), LONG_TOKENS))
        {
            Ok(stream) => streams.push(stream),
            Err(error) => panic!(
                "with max_running {max_running} and max_waiting {max_waiting}, request {} of {capacity} should be admitted, got {error:?}",
                admitted + 1
            ),
        }
    }
    let ids: std::collections::BTreeSet<u64> = streams.iter().map(|stream| stream.id).collect();
    assert_eq!(
        ids.len(),
        capacity,
        "every request gets its own id: {ids:?}"
    );
    for _ in 0..2 {
        match server.engine.submit(greedy_params(prompt.clone(), 4)) {
            Err(SubmitError::Busy) => {}
            other => panic!(
                "with max_running {max_running}, max_waiting {max_waiting} and {capacity} requests in, submit should be Busy, got {:?}",
                other.map(|stream| stream.id)
            ),
        }
    }
}
