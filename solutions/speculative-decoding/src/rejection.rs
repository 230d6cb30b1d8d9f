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
    let k = draft.len() as i32;
    let vocab = target.shape().last().copied().unwrap_or(0);
    if target.shape() != [k + 1, vocab] || draft_probabilities.shape() != [k, vocab] {
        return Err(Exception::custom(format!(
            "verify_sampled: a draft of {k} tokens needs target [{}, V] and draft [{k}, V] probabilities, got {:?} and {:?}",
            k + 1,
            target.shape(),
            draft_probabilities.shape()
        )));
    }
    let (accept_key, sample_key) = random::split(key, 2)?;
    let mut accepted = 0;
    if k > 0 {
        let ids = Array::from_slice(draft, &[k, 1]).as_dtype(Dtype::Int32)?; // [k, 1]
        let p = target
            .index((..k, ..))
            .take_along_axis(&ids, 1)?
            .reshape(&[k])?; // [k]: p_i(x_i)
        let q = draft_probabilities
            .take_along_axis(&ids, 1)?
            .reshape(&[k])?; // [k]: q_i(x_i)
        let u = random::uniform::<_, f32>(0.0, 1.0, &[k], &accept_key)?; // [k]
                                                                         // u * q < p is u < p / q without dividing by a q that rounds to 0.
        let keep = u.multiply(&q)?.lt(&p)?; // [k] bool
        accepted = keep
            .as_slice::<bool>()
            .iter()
            .take_while(|&&kept| kept)
            .count();
    }
    let row = accepted as i32;
    let next_distribution = if accepted < draft.len() {
        let residual = ops::maximum(
            target.index(row).subtract(draft_probabilities.index(row))?,
            Array::from_f32(0.0),
        )?; // [V]
        let mass = residual.sum(None)?; // []
                                        // A rejection means q_i(x) > p_i(x), so some other token has p > q and the mass is
                                        // positive; rounding could still leave none, and then p_i itself is the right answer.
        let positive = mass
            .try_item_cast::<f32>()
            .map_err(|error| Exception::custom(error.to_string()))?
            > 0.0;
        if positive {
            residual.divide(&mass)?
        } else {
            target.index(row)
        }
    } else {
        target.index(row) // [V]: the bonus token after a fully accepted draft
    };
    let next = random::categorical(next_distribution.log()?, None, None, &sample_key)? // []
        .try_item_cast::<u32>()
        .map_err(|error| Exception::custom(error.to_string()))?;
    Ok(Verdict { accepted, next })
}
