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
    if prompt.is_empty() {
        return Err(SpeculativeError::EmptyPrompt);
    }
    let params = &options.sampling;
    let vocab = target.config().vocab_size;
    let mut output = Output::new(
        tokenizer,
        &options.generation,
        &target.config().eos_token_ids,
    );
    let mut stats = SpeculationStats::start();
    let mut cache = target.new_cache();
    let mut key = random::key(params.seed)?;
    let mut sequence = prompt.to_vec();
    let mut pending = prompt.to_vec(); // in the sequence, not yet in the cache
    while output.remaining() > 0 {
        let prefill = pending.len() == sequence.len();
        // Never draft what could not be kept: the step yields up to k + 1 tokens.
        let k = if prefill {
            0
        } else {
            options.num_draft_tokens.min(output.remaining() - 1)
        };
        let draft = match k {
            0 => Draft::default(),
            _ => drafter.propose(&sequence, k)?,
        };
        let drafted = &draft.tokens[..draft.tokens.len().min(k)];
        let n = drafted.len() as i32;

        let input: Vec<u32> = pending.iter().chain(drafted).copied().collect();
        let length = input.len() as i32;
        let ids = Array::from_slice(&input, &[1, length]); // [1, L]
        let logits = target.forward(&ids, &mut cache)?; // [1, L, V]
        let rows = logits.index((0, length - n - 1..)); // [k + 1, V]
        let rows = output.mask_ignored_eos(&rows)?;
        let rows = processed_rows(&rows, &sequence, drafted, params)?; // [k + 1, V]
        let verdict = if params.temperature == 0.0 {
            verify_greedy(&rows, drafted)?
        } else {
            let p = ops::softmax_axis(&rows, -1, true)?; // [k + 1, V]
            let q = draft.probabilities_or_one_hot(vocab)?.index((..n, ..)); // [k, V]
            let (step_key, next_key) = random::split(&key, 2)?;
            key = next_key;
            verify_sampled(&p, &q, drafted, &step_key)?
        };
        stats.record_step(drafted.len(), verdict.accepted);

        // The cache holds the sequence and the whole draft: forget the rejected part.
        let kept = (sequence.len() + verdict.accepted) as i32;
        for layer in &mut cache {
            layer.truncate(kept)?;
        }
        pending = vec![verdict.next];
        for &token in drafted[..verdict.accepted].iter().chain([&verdict.next]) {
            if !output.push(token, on_text)? {
                break;
            }
            sequence.push(token);
        }
    }
    Ok(SpeculativeGeneration {
        generation: output.finish(on_text)?,
        stats,
        cache,
    })
}
