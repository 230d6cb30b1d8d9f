//! The speculative decode loop: draft `k` tokens, verify them with one forward pass of the
//! target, keep the accepted ones and one more, rewind the cache past the rest.

use crate::{
    processed_rows, verify_greedy, verify_sampled, Draft, Drafter, Output, SpeculationStats,
    SpeculativeError, SpeculativeGeneration, SpeculativeOptions,
};
use decode::Tokenizer;
use kv_cache::Model;
use mlx_rs::{
    ops::{self, indexing::IndexOp},
    random, Array,
};

/// Generates after `prompt` with `target`, `drafter` proposing up to `options.num_draft_tokens`
/// tokens per target step, streaming the text through `on_text`.
///
/// - The target's cache holds every token of the sequence but the `pending` ones. The first step
///   (the prefill) runs the whole prompt and drafts nothing; each later step asks the drafter for
///   `k` tokens, at most one fewer than the output has room for, and runs `pending` and the draft
///   in ONE forward pass (`[1, pending + k]`).
/// - The last `k + 1` positions' logits (`[k + 1, V]`), with EOS masked when the options ignore it
///   ([`Output::mask_ignored_eos`]) and transformed as the sampler would ([`processed_rows`]),
///   verify the draft: [`verify_greedy`] at temperature 0, else [`verify_sampled`] on their
///   `softmax`, the draft's [`Draft::probabilities_or_one_hot`] and a key split off this
///   generation's own (seeded with `options.sampling.seed`).
/// - Record the step ([`SpeculationStats::record_step`]), then rewind: truncate every layer's
///   cache to the sequence plus the accepted draft tokens; the verdict's `next` is pending.
/// - Push the accepted tokens and `next`, in order, to an [`Output`]; stop as soon as a push
///   says so (an EOS, a stop string or the token limit inside an accepted run).
/// - Return the generation, the stats and the target's cache.
/// - With greedy sampling the tokens are exactly chapter 6's `generate` with `greedy`, whatever
///   the drafter; with temperature they follow the sampler's distribution.
///
/// Book: week 3, chapter 14 (speculative decoding), task 5.
pub fn speculative_generate(
    target: &Model,
    drafter: &mut dyn Drafter,
    tokenizer: &Tokenizer,
    prompt: &[u32],
    options: &SpeculativeOptions,
    on_text: &mut dyn FnMut(&str),
) -> Result<SpeculativeGeneration, SpeculativeError> {
    todo!("chapter 14, task 5: prefill, then per step draft k tokens, run pending + draft in one forward pass, verify the last k + 1 rows, truncate the cache, push the tokens")
}
