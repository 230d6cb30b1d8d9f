//! The distribution chapter 7's sampler draws from, position by position: what the target's rows
//! are verified against and what a draft model samples from. Given.

use mlx_rs::{error::Exception, ops, ops::indexing::IndexOp, Array};
use sampling::{
    apply_repetition_penalty, apply_temperature, min_p_filter, top_k_filter, top_p_filter,
    SamplingParams,
};

/// The logits `[V]` after `previous` as chapter 7's [`Sampler`](sampling::Sampler) transforms
/// them, in its order: the repetition penalty, then (unless `temperature` is 0) temperature,
/// top-k, top-p and min-p.
///
/// - At temperature 0 the sampler's token is the argmax of the result; otherwise it draws from
///   `softmax` of it, which [`probabilities`] returns.
pub fn processed_logits(
    logits: &Array,
    previous: &[u32],
    params: &SamplingParams,
) -> Result<Array, Exception> {
    let mut logits = match params.repetition_penalty {
        Some(penalty) => apply_repetition_penalty(logits, previous, penalty)?,
        None => logits.clone(),
    };
    if params.temperature == 0.0 {
        return Ok(logits);
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
    Ok(logits)
}

/// The probabilities `[V]` the sampler draws the token after `previous` from (temperature above
/// 0): `softmax` of [`processed_logits`], float32.
pub fn probabilities(
    logits: &Array,
    previous: &[u32],
    params: &SamplingParams,
) -> Result<Array, Exception> {
    let logits = processed_logits(logits, previous, params)?.as_dtype(mlx_rs::Dtype::Float32)?;
    ops::softmax_axis(&logits, -1, true)
}

/// [`processed_logits`] for the `k + 1` rows the target verifies a draft with.
///
/// - `logits`: `[k + 1, V]`; row `i` follows `sequence` and the first `i` tokens of `draft`.
/// - Returns `[k + 1, V]`. Without a penalty or filter the rows are transformed at once; with
///   one, each row sees its own previous tokens.
pub fn processed_rows(
    logits: &Array,
    sequence: &[u32],
    draft: &[u32],
    params: &SamplingParams,
) -> Result<Array, Exception> {
    let per_row = params.repetition_penalty.is_some()
        || params.top_k.is_some()
        || params.top_p.is_some()
        || params.min_p.is_some();
    if !per_row {
        if params.temperature == 0.0 {
            return Ok(logits.clone());
        }
        return logits.divide(Array::from_f32(params.temperature)); // [k + 1, V]
    }
    let mut previous = sequence.to_vec();
    let mut rows = Vec::with_capacity(draft.len() + 1);
    for row in 0..=draft.len() {
        rows.push(processed_logits(
            &logits.index(row as i32),
            &previous,
            params,
        )?); // [V]
        if let Some(&token) = draft.get(row) {
            previous.push(token);
        }
    }
    ops::stack(&rows, 0) // [k + 1, V]
}
