//! The rejection rule of speculative sampling (Leviathan et al. 2023, Chen et al. 2023): keep a
//! draft token with probability `min(1, p/q)`, else draw from what the target wants more than
//! the drafter did. The tokens then follow the target's distribution exactly, whatever the draft.

use crate::Verdict;
use mlx_rs::{
    error::Exception,
    ops::{self, indexing::IndexOp},
    random, Array, Dtype,
};

/// Checks a sampled draft against the target's distributions.
///
/// - `target`: `[k + 1, V]`, the target's probabilities `p_i` (row `i` after the sequence and the
///   first `i` draft tokens); `draft_probabilities`: `[k, V]`, the drafter's `q_i`, which
///   `draft[i]` was drawn from; `draft`: the `k` tokens. `key`: the random key of this step.
/// - Going through the draft in order, keep token `x = draft[i]` with probability
///   `min(1, p_i(x) / q_i(x))` (a uniform draw `u`: keep when `u * q_i(x) < p_i(x)`). At the first
///   rejection, `next` is drawn from the residual `max(0, p_i - q_i)`, normalized. When every
///   token is kept, `next` is drawn from `p_k`.
/// - With one-hot `p` and `q` (greedy target and drafter) this is [`verify_greedy`](crate::verify_greedy).
/// - Fails when the shapes disagree with `k = draft.len()`.
///
/// Book: week 3, chapter 14 (speculative decoding), task 3.
pub fn verify_sampled(
    target: &Array,
    draft_probabilities: &Array,
    draft: &[u32],
    key: &Array,
) -> Result<Verdict, Exception> {
    todo!("chapter 14, task 3: keep draft token x while u * q(x) < p(x); at the first rejection draw from norm(max(0, p - q)), else the bonus from the last row")
}
