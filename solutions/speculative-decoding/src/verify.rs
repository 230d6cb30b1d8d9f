//! Greedy verification: the target's argmax at every drafted position, in one forward pass.

use crate::Verdict;
use mlx_rs::{error::Exception, ops::indexing::argmax_axis, transforms::eval, Array, Dtype};

/// Checks a draft against the target's greedy choices.
///
/// - `logits`: `[k + 1, V]`, the target's rows for the draft: row `i` scores the token after the
///   sequence and the first `i` draft tokens, so row `k` follows the whole draft.
/// - `draft`: the `k` proposed tokens.
/// - Keep draft tokens while each equals the argmax of its row; the first that differs is
///   replaced by that argmax. When all `k` match, row `k`'s argmax is a bonus token.
/// - Returns the [`Verdict`]: exactly the tokens greedy decoding would have produced one by one.
/// - Fails when `logits` does not have `k + 1` rows.
///
/// Book: week 3, chapter 14 (speculative decoding), task 2.
pub fn verify_greedy(logits: &Array, draft: &[u32]) -> Result<Verdict, Exception> {
    let rows = draft.len() as i32 + 1;
    if logits.ndim() != 2 || logits.shape()[0] != rows {
        return Err(Exception::custom(format!(
            "verify_greedy: a draft of {} tokens needs logits [{rows}, V], got {:?}",
            draft.len(),
            logits.shape()
        )));
    }
    let choices = argmax_axis(logits, -1, None)?.as_dtype(Dtype::Uint32)?; // [k + 1]
    eval([&choices])?; // one synchronization for the whole draft
    let choices = choices.as_slice::<u32>();
    let accepted = draft
        .iter()
        .zip(choices)
        .take_while(|(drafted, chosen)| drafted == chosen)
        .count();
    Ok(Verdict {
        accepted,
        next: choices[accepted],
    })
}
