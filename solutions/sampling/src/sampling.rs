//! From one position's logits to the next token: temperature, top-k, top-p, min-p, the
//! repetition penalty, and a seeded sampler that applies them in order.

use crate::SamplingParams;
use mlx_rs::{
    error::{Exception, Result},
    ops, random, Array, Dtype,
};
use std::collections::BTreeSet;

/// Divides `logits` by `temperature`: below 1 sharpens the distribution, above 1 flattens it.
///
/// - `logits`: `[vocab]`, any float dtype.
/// - `temperature`: positive and finite, otherwise an error naming `temperature` (the sampler
///   treats temperature 0 as greedy and never calls this with it).
/// - Returns `[vocab]` in the dtype of `logits`.
///
/// Book: week 1, chapter 7 (sampling), task 1.
pub fn apply_temperature(logits: &Array, temperature: f32) -> Result<Array> {
    if !(temperature > 0.0 && temperature.is_finite()) {
        return Err(Exception::custom(format!(
            "temperature must be positive and finite to scale logits, got {temperature}"
        )));
    }
    logits.divide(scalar(temperature, logits.dtype())?)
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
    let vocab = vocab_size(logits)?;
    if k == 0 {
        return Err(Exception::custom("top-k: k must be at least 1, got 0"));
    }
    if k >= vocab {
        return Ok(logits.clone());
    }
    let kth_largest = ops::indexing::topk(logits, k as i32)?.min(None)?; // []
    keep_where(logits, &logits.ge(&kth_largest)?)
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
    vocab_size(logits)?;
    if !(top_p > 0.0 && top_p <= 1.0) {
        return Err(Exception::custom(format!(
            "top_p must be in (0, 1], got {top_p}"
        )));
    }
    // A float32 sum of all probabilities may round to just below 1 and drop the rarest tokens.
    if top_p == 1.0 {
        return Ok(logits.clone());
    }
    let probabilities = ops::softmax_axis(logits.as_dtype(Dtype::Float32)?, -1, true)?; // [vocab]
    let ascending = ops::sort(&probabilities)?; // [vocab]
                                                // For each token, the mass of the tokens sorted after it: the more probable ones.
    let mass_before = ascending.cumsum(0, true, false)?; // [vocab]
    let in_nucleus = mass_before.lt(Array::from_f32(top_p))?; // [vocab], the largest ones
    let smallest_member =
        ops::select(&in_nucleus, &ascending, Array::from_f32(f32::INFINITY))?.min(None)?; // []
    keep_where(logits, &probabilities.ge(&smallest_member)?)
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
    vocab_size(logits)?;
    if !(0.0..=1.0).contains(&min_p) {
        return Err(Exception::custom(format!(
            "min_p must be in [0, 1], got {min_p}"
        )));
    }
    let probabilities = ops::softmax_axis(logits.as_dtype(Dtype::Float32)?, -1, true)?; // [vocab]
    let threshold = probabilities.max(None)?.multiply(Array::from_f32(min_p))?; // []
    keep_where(logits, &probabilities.ge(&threshold)?)
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
    let vocab = vocab_size(logits)?;
    if !(penalty > 0.0 && penalty.is_finite()) {
        return Err(Exception::custom(format!(
            "the repetition penalty must be positive and finite, got {penalty}"
        )));
    }
    let seen: Vec<u32> = previous_tokens
        .iter()
        .copied()
        .collect::<BTreeSet<u32>>()
        .into_iter()
        .collect();
    match seen.last() {
        None => return Ok(logits.clone()),
        Some(&largest) if largest as usize >= vocab => {
            return Err(Exception::custom(format!(
                "previous_tokens holds token id {largest}, outside the vocabulary of {vocab} logits"
            )))
        }
        Some(_) => {}
    }
    let ids = Array::from_slice(&seen, &[seen.len() as i32]); // [n], each id once
    let old = logits.take(&ids)?; // [n]
    let penalty = scalar(penalty, logits.dtype())?;
    let new = ops::select(
        old.gt(Array::from_f32(0.0))?,
        old.divide(&penalty)?,
        old.multiply(&penalty)?,
    )?; // [n]
    logits.put_along_axis(&ids, &new, 0)
}

/// Picks the next token from the logits of a sequence's last position.
///
/// Book: week 1, chapter 7 (sampling), task 6.
pub struct Sampler {
    params: SamplingParams,
    /// Split in two at every draw: one half draws the token, the other becomes this key.
    key: Array,
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
        let invalid = |problem: String| -> Result<Self> { Err(Exception::custom(problem)) };
        if !(params.temperature.is_finite() && params.temperature >= 0.0) {
            return invalid(format!(
                "temperature must be finite and at least 0 (0 is greedy), got {}",
                params.temperature
            ));
        }
        if params.top_k == Some(0) {
            return invalid("top_k must be at least 1, got 0".to_string());
        }
        if let Some(top_p) = params.top_p.filter(|p| !(*p > 0.0 && *p <= 1.0)) {
            return invalid(format!("top_p must be in (0, 1], got {top_p}"));
        }
        if let Some(min_p) = params.min_p.filter(|p| !(0.0..=1.0).contains(p)) {
            return invalid(format!("min_p must be in [0, 1], got {min_p}"));
        }
        if let Some(penalty) = params
            .repetition_penalty
            .filter(|p| !(*p > 0.0 && p.is_finite()))
        {
            return invalid(format!(
                "repetition_penalty must be positive and finite, got {penalty}"
            ));
        }
        Ok(Sampler {
            params,
            key: random::key(params.seed)?,
        })
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
        vocab_size(logits)?;
        let params = self.params;
        let mut logits = match params.repetition_penalty {
            Some(penalty) => apply_repetition_penalty(logits, previous_tokens, penalty)?,
            None => logits.clone(),
        };
        if params.temperature == 0.0 {
            return token_id(&ops::indexing::argmax(&logits, None)?);
        }
        logits = apply_temperature(&logits, params.temperature)?;
        if let Some(k) = params.top_k {
            logits = top_k_filter(&logits, k)?;
        }
        if let Some(top_p) = params.top_p {
            logits = top_p_filter(&logits, top_p)?;
        }
        if let Some(min_p) = params.min_p {
            logits = min_p_filter(&logits, min_p)?;
        }
        let (draw, next) = random::split(&self.key, 2)?;
        self.key = next;
        token_id(&random::categorical(&logits, None, None, &draw)?)
    }
}

/// The length of 1-D `logits`, or an error naming them.
fn vocab_size(logits: &Array) -> Result<usize> {
    match logits.shape() {
        [vocab] => Ok(*vocab as usize),
        shape => Err(Exception::custom(format!(
            "logits must be 1-D [vocab], got shape {shape:?}"
        ))),
    }
}

/// `value` as a 0-D array of `dtype`, so that it does not promote float16 logits to float32.
fn scalar(value: f32, dtype: Dtype) -> Result<Array> {
    Array::from_f32(value).as_dtype(dtype)
}

/// `logits` where `keep` holds, `-inf` elsewhere.
fn keep_where(logits: &Array, keep: &Array) -> Result<Array> {
    ops::select(keep, logits, scalar(f32::NEG_INFINITY, logits.dtype())?)
}

/// The value of a 0-D index array (what `argmax` and `categorical` return).
fn token_id(index: &Array) -> Result<u32> {
    index
        .try_item_cast::<u32>()
        .map_err(|error| Exception::custom(error.to_string()))
}
