//! From one position's logits to the next token: temperature, top-k, top-p, min-p, the
//! repetition penalty, and a seeded sampler that applies them in order.

use crate::SamplingParams;
use mlx_rs::{error::Result, Array};

/// Divides `logits` by `temperature`: below 1 sharpens the distribution, above 1 flattens it.
///
/// - `logits`: `[vocab]`, any float dtype.
/// - `temperature`: positive and finite, otherwise an error naming `temperature` (the sampler
///   treats temperature 0 as greedy and never calls this with it).
/// - Returns `[vocab]` in the dtype of `logits`.
///
/// Book: week 1, chapter 7 (sampling), task 1.
pub fn apply_temperature(logits: &Array, temperature: f32) -> Result<Array> {
    todo!("chapter 7, task 1: check the temperature, then divide by it in the dtype of the logits")
}

/// Keeps the `k` largest logits and sets the others to `-inf`.
///
/// - `logits`: `[vocab]`, any float dtype.
/// - `k`: at least 1, otherwise an error naming `k`; `k >= vocab` keeps everything.
/// - Ties at the boundary are all kept: every logit at least as large as the k-th largest
///   survives, so more than `k` tokens may remain (HF's `TopKLogitsWarper` does the same).
/// - Returns `[vocab]` in the dtype of `logits`: kept entries unchanged, the others `-inf`.
///
/// Book: week 1, chapter 7 (sampling), task 2.
pub fn top_k_filter(logits: &Array, k: usize) -> Result<Array> {
    todo!(
        "chapter 7, task 2: keep logits >= the k-th largest (ops::indexing::topk), -inf elsewhere"
    )
}

/// Nucleus filtering: keeps the smallest set of most probable tokens whose probabilities sum
/// to at least `top_p`, and sets the others to `-inf`.
///
/// - `logits`: `[vocab]`, any float dtype; the probabilities are `softmax(logits)` in float32.
/// - `top_p`: in `(0, 1]`, otherwise an error naming `top_p`; 1 keeps everything.
/// - Sort the probabilities from the largest down: a token belongs to the nucleus when the
///   tokens before it sum to less than `top_p`, so the most probable token always does, and a
///   sum that reaches `top_p` exactly closes the nucleus.
/// - Ties at the boundary are all kept, as in [`top_k_filter`]: every token at least as probable
///   as the least probable member of the nucleus survives.
/// - Returns `[vocab]` in the dtype of `logits`: kept entries unchanged, the others `-inf`.
///
/// Book: week 1, chapter 7 (sampling), task 3.
pub fn top_p_filter(logits: &Array, top_p: f32) -> Result<Array> {
    todo!(
        "chapter 7, task 3: softmax, sort, sum what comes before each token, keep sums below top_p"
    )
}

/// Keeps the tokens at least `min_p` times as probable as the most probable one, and sets the
/// others to `-inf`.
///
/// - `logits`: `[vocab]`, any float dtype; the probabilities are `softmax(logits)` in float32.
/// - `min_p`: in `[0, 1]`, otherwise an error naming `min_p`; 0 keeps everything, 1 keeps the
///   most probable token (and any tied with it).
/// - A token exactly at the threshold `min_p * p_max` is kept.
/// - Returns `[vocab]` in the dtype of `logits`: kept entries unchanged, the others `-inf`.
///
/// Book: week 1, chapter 7 (sampling), task 4.
pub fn min_p_filter(logits: &Array, min_p: f32) -> Result<Array> {
    todo!("chapter 7, task 4: softmax, then keep the tokens with p >= min_p * max p")
}

/// The repetition penalty of CTRL (Keskar et al., 2019), as in HF transformers: the logit of
/// every token in `previous_tokens` is divided by `penalty` when positive and multiplied by it
/// when negative, so that `penalty > 1` makes repeating a token less likely.
///
/// - `logits`: `[vocab]`, any float dtype.
/// - `previous_tokens`: token ids below `vocab` (an id outside is an error naming
///   `previous_tokens`); a token that appears several times is penalized once.
/// - `penalty`: positive and finite, otherwise an error naming the penalty; 1 changes nothing.
/// - Returns `[vocab]` in the dtype of `logits`; the logits of other tokens are unchanged.
///
/// Book: week 1, chapter 7 (sampling), task 5.
pub fn apply_repetition_penalty(
    logits: &Array,
    previous_tokens: &[u32],
    penalty: f32,
) -> Result<Array> {
    todo!("chapter 7, task 5: take the distinct previous tokens' logits, rescale, put them back")
}

/// Picks the next token from the logits of a sequence's last position.
///
/// Book: week 1, chapter 7 (sampling), task 6.
pub struct Sampler {
    // Keep what `sample` needs: the parameters and the random key of the next draw.
}

impl Sampler {
    /// Checks `params` and derives the first random key from `params.seed`.
    ///
    /// - Fails, naming the parameter and its allowed range, unless `temperature` is finite and
    ///   at least 0, `top_k` at least 1, `top_p` in `(0, 1]`, `min_p` in `[0, 1]` and
    ///   `repetition_penalty` positive and finite.
    ///
    /// Book: week 1, chapter 7 (sampling), task 6.
    pub fn new(params: SamplingParams) -> Result<Self> {
        todo!("chapter 7, task 6: check every parameter, then make a random key from the seed")
    }

    /// Draws the next token.
    ///
    /// - `logits`: `[vocab]`, any float dtype.
    /// - `previous_tokens`: the tokens so far (prompt and generated), for the repetition penalty.
    /// - Applies, in this order, those that are set: the repetition penalty, temperature, top-k,
    ///   top-p and min-p; then draws from what is left with `mlx_rs::random::categorical` and a
    ///   key split off the sampler's own, so that the same seed gives the same token sequence.
    /// - Temperature 0 returns the argmax of the penalized logits and draws nothing: no filter
    ///   ever removes the most probable token, so the filters would not change it.
    ///
    /// Book: week 1, chapter 7 (sampling), task 6.
    pub fn sample(&mut self, logits: &Array, previous_tokens: &[u32]) -> Result<u32> {
        todo!("chapter 7, task 6: penalty; argmax at temperature 0; else temperature, filters, categorical")
    }
}
