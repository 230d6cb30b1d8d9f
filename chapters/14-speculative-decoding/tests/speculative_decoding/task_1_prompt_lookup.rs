//! Task 1: prompt lookup, the drafter without a model.

use rstest::rstest;
use speculative_decoding::{prompt_lookup, Drafter, NgramDrafter};
use test_support::expect_ok as ok;

/// Each expectation worked out by hand from the rule: the longest suffix (up to `max_ngram`)
/// that occurs earlier, its most recent earlier occurrence, up to `k` tokens after it.
#[rstest]
#[case::no_earlier_occurrence(&[1, 2, 3], 3, 4, &[])]
#[case::single_token_match(&[5, 6, 7, 5], 3, 2, &[6, 7])]
#[case::longest_match_wins(&[1, 2, 3, 9, 2, 3, 4, 1, 2, 3], 3, 3, &[9, 2, 3])]
#[case::shorter_when_longer_is_not_allowed(&[1, 2, 3, 9, 2, 3, 4, 1, 2, 3], 2, 3, &[4, 1, 2])]
#[case::most_recent_occurrence(&[1, 7, 1, 8, 1], 1, 1, &[8])]
#[case::k_caps_the_draft(&[1, 2, 3, 4, 5, 1], 3, 2, &[2, 3])]
#[case::sequence_ends_first(&[4, 4, 4], 2, 5, &[4])]
#[case::overlapping_match(&[6, 6, 6, 6], 3, 4, &[6])]
#[case::k_zero(&[1, 2, 1], 2, 0, &[])]
#[case::one_token(&[3], 2, 4, &[])]
#[case::empty(&[], 3, 4, &[])]
fn task_1_prompt_lookup_follows_the_rule(
    #[case] sequence: &[u32],
    #[case] max_ngram: usize,
    #[case] k: usize,
    #[case] expected: &[u32],
) {
    assert_eq!(
        prompt_lookup(sequence, max_ngram, k),
        expected,
        "prompt_lookup({sequence:?}, max_ngram {max_ngram}, k {k})"
    );
}

/// A code-like sequence where a line repeats: the drafter proposes the rest of the line.
#[test]
fn task_1_ngram_drafter_proposes_the_repeated_line() {
    // "for i in x :\n  y\n" twice, the second cut after "for i"
    let line = [10, 11, 12, 13, 14, 15, 16, 17];
    let mut sequence = line.to_vec();
    sequence.extend_from_slice(&line[..2]);
    let draft = ok(
        NgramDrafter { max_ngram: 3 }.propose(&sequence, 4),
        "NgramDrafter::propose",
    );
    assert_eq!(draft.tokens, [12, 13, 14, 15]);
    assert!(
        draft.probabilities.is_none(),
        "a looked-up draft is deterministic"
    );
}
