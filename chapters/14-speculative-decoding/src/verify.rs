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
    todo!("chapter 14, task 2: argmax of each row, keep draft tokens while they match, next = the argmax of the first row that differs (or of the last row)")
}
