//! Task 2: greedy verification of a draft, in one forward pass.

use crate::harness::{reference_sequence, tiny_model};
use mlx_rs::{ops::indexing::argmax_axis, ops::indexing::IndexOp, Array, Dtype};
use rstest::rstest;
use speculative_decoding::{verify_greedy, Verdict};
use test_support::{expect_ok as ok, random_array};

const VOCAB: i32 = 32;

/// MLX's argmax of each row of `logits` `[rows, V]`.
fn argmax_rows(logits: &Array) -> Vec<u32> {
    let choices = argmax_axis(logits, -1, None).and_then(|a| a.as_dtype(Dtype::Uint32));
    ok(choices, "argmax").as_slice::<u32>().to_vec()
}

/// Seeded random rows; a draft whose first `matching` tokens are the rows' argmax and whose next
/// token is not: greedy decoding keeps exactly `matching`, then the argmax of that row.
#[rstest]
#[case::no_draft(0, 0)]
#[case::one_rejected(1, 0)]
#[case::one_accepted(1, 1)]
#[case::first_rejected(4, 0)]
#[case::two_of_four(4, 2)]
#[case::all_four_and_a_bonus(4, 4)]
#[case::five_of_seven(7, 5)]
fn task_2_verify_greedy_keeps_the_matching_prefix(#[case] k: usize, #[case] matching: usize) {
    let logits = random_array(&[k as i32 + 1, VOCAB], Dtype::Float32, 14 + k as u64);
    let best = argmax_rows(&logits);
    let draft: Vec<u32> = (0..k)
        .map(|i| match i {
            i if i < matching => best[i],
            i if i == matching => (best[i] + 1) % VOCAB as u32,
            i => (i as u32 * 7) % VOCAB as u32,
        })
        .collect();
    let verdict = ok(verify_greedy(&logits, &draft), "verify_greedy");
    assert_eq!(
        verdict,
        Verdict {
            accepted: matching,
            next: best[matching]
        },
        "draft {draft:?} against the rows' argmax {best:?}"
    );
}

#[test]
fn task_2_verify_greedy_rejects_rows_that_do_not_fit_the_draft() {
    let logits = random_array(&[3, VOCAB], Dtype::Float32, 1);
    assert!(
        verify_greedy(&logits, &[1, 2, 3]).is_err(),
        "a draft of 3 tokens needs 4 rows of logits, not 3"
    );
}

/// The target runs the prompt and a draft in one forward pass; its last `k + 1` rows verify the
/// draft. Drafts made of transformers' greedy continuation with a wrong token at `wrong`: the
/// verdict must keep exactly the tokens before it and correct it to transformers' token.
#[rstest]
fn task_2_one_forward_pass_verifies_like_transformers_greedy(
    #[values("llama-tiny", "qwen2-tiny", "qwen3-tiny")] model_name: &str,
    #[values(0, 3, 6)] wrong: usize,
) {
    let model = tiny_model(model_name);
    let (prompt, continuation) = reference_sequence(model_name, 1);
    let k = 6;
    let mut draft = continuation[..k].to_vec();
    if wrong < k {
        draft[wrong] = (draft[wrong] + 1) % 512;
    }
    let input: Vec<u32> = prompt.iter().chain(&draft).copied().collect();
    let ids = Array::from_slice(&input, &[1, input.len() as i32]);
    let logits = ok(
        model.forward(&ids, &mut model.new_cache()),
        "Model::forward",
    ); // [1, L, V]
    let rows = logits.index((0, (prompt.len() - 1) as i32..)); // [k + 1, V]
    let verdict = ok(verify_greedy(&rows, &draft), "verify_greedy");
    let accepted = wrong.min(k);
    assert_eq!(
        verdict,
        Verdict {
            accepted,
            next: continuation[accepted]
        },
        "{model_name}: draft {draft:?}, transformers' continuation {continuation:?}"
    );
}
