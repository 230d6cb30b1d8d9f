//! The log-probabilities a request may ask for with each token (OpenAI's `logprobs` and
//! `top_logprobs`): those of the model's own distribution, the log-softmax of its raw logits,
//! before the sampler's temperature, penalties or a constraint's mask (what OpenAI and vLLM
//! report). Given.

use crate::{Event, Request};
use mlx_rs::{
    error::{Exception, Result},
    nn::log_softmax,
    ops::{
        argpartition_axis, argsort_axis,
        indexing::{take_along_axis, IndexOp},
    },
    transforms::eval,
    Array, Dtype,
};
use std::collections::HashMap;

/// The most alternatives a request may ask for (OpenAI's limit for `top_logprobs`).
pub const MAX_TOP_LOGPROBS: usize = 20;

/// The log-probabilities of one chosen token.
#[derive(Clone, Debug, PartialEq)]
pub struct TokenLogprobs {
    /// Of the token chosen.
    pub logprob: f32,
    /// The most likely tokens and their log-probabilities, most likely first, as many as the
    /// request asked for.
    pub top: Vec<(u32, f32)>,
}

/// Fills in the log-probabilities of the `Token` events in `events` whose request asked for
/// them (`Request::logprobs`), from the logits they were chosen from: row `b` of `logits`
/// `[B, V]` belongs to the `b`-th of `requests`. One wait for the device for every row, after
/// each has chosen its token.
pub fn attach_logprobs<'a>(
    logits: &Array,
    requests: impl IntoIterator<Item = &'a Request>,
    events: &mut [Event],
) -> Result<()> {
    let row_of: HashMap<u64, (i32, usize)> = requests
        .into_iter()
        .enumerate()
        .filter_map(|(row, request)| Some((request.id, (row as i32, request.logprobs?))))
        .collect();
    // (event index, logits row, chosen token, alternatives) of each event to fill in.
    let wanted: Vec<(usize, i32, u32, usize)> = events
        .iter()
        .enumerate()
        .filter_map(|(index, event)| match event {
            Event::Token { id, token, .. } => row_of
                .get(id)
                .map(|&(row, top)| (index, row, *token, top.min(MAX_TOP_LOGPROBS))),
            Event::Finished { .. } => None,
        })
        .collect();
    if wanted.is_empty() {
        return Ok(());
    }
    let rows: Vec<i32> = wanted.iter().map(|&(_, row, _, _)| row).collect();
    let chosen: Vec<u32> = wanted.iter().map(|&(_, _, token, _)| token).collect();
    let top = wanted.iter().map(|&(_, _, _, top)| top).max().unwrap_or(0);
    let count = wanted.len() as i32;
    let logits = logits.take_axis(Array::from_slice(&rows, &[count]), 0)?; // [R, V]
    let logprobs = log_softmax(logits.as_dtype(Dtype::Float32)?, -1)?; // [R, V]
    let chosen_logprobs = take_along_axis(&logprobs, Array::from_slice(&chosen, &[count, 1]), -1)?; // [R, 1]
    let mut outputs = vec![chosen_logprobs]; // [R, 1]
    if top > 0 {
        // The `top` largest in any order, then sorted: cheaper than sorting all V.
        let kth = logprobs.shape()[1] - top as i32;
        let largest = argpartition_axis(&logprobs, kth, -1)?.index((.., kth..)); // [R, top]
        let values = take_along_axis(&logprobs, &largest, -1)?; // [R, top]
        let order = argsort_axis(values.negative()?, -1)?; // [R, top], largest first
        outputs.push(take_along_axis(&largest, &order, -1)?.as_dtype(Dtype::Uint32)?);
        outputs.push(take_along_axis(&values, &order, -1)?);
    }
    eval(&outputs)?;
    let chosen_logprobs = read::<f32>(&outputs[0])?;
    // An empty array has no data to read.
    let (top_tokens, top_logprobs) = if top > 0 {
        (read::<u32>(&outputs[1])?, read::<f32>(&outputs[2])?)
    } else {
        (Vec::new(), Vec::new())
    };
    for (r, &(index, _, _, wanted_top)) in wanted.iter().enumerate() {
        let alternatives = (r * top..r * top + wanted_top)
            .map(|k| (top_tokens[k], top_logprobs[k]))
            .collect();
        if let Event::Token { logprobs, .. } = &mut events[index] {
            *logprobs = Some(TokenLogprobs {
                logprob: chosen_logprobs[r],
                top: alternatives,
            });
        }
    }
    Ok(())
}

fn read<T: mlx_rs::ArrayElement + Copy>(array: &Array) -> Result<Vec<T>> {
    array
        .try_as_slice::<T>()
        .map(<[T]>::to_vec)
        .map_err(|error| Exception::custom(error.to_string()))
}
