//! Prompt lookup: drafting by finding the last few tokens earlier in the text. The drafter that
//! uses it, [`NgramDrafter`](crate::NgramDrafter), is in `src/draft.rs`.

/// The tokens that followed an earlier occurrence of the end of `sequence`: a draft that costs
/// no model.
///
/// - Try the last `n` tokens of `sequence` as the pattern, for `n` from `max_ngram` down to 1:
///   the first `n` with an earlier occurrence wins (a longer match predicts better).
/// - "Earlier" means starting before the pattern itself; among several, take the most recent
///   (the closest to the end), since recent text repeats most.
/// - Return the up to `k` tokens after that occurrence (fewer when `sequence` ends first);
///   nothing when no suffix occurs earlier, or when `k` is 0.
///
/// Book: week 3, chapter 14 (speculative decoding), task 1.
pub fn prompt_lookup(sequence: &[u32], max_ngram: usize, k: usize) -> Vec<u32> {
    let len = sequence.len();
    if k == 0 {
        return Vec::new();
    }
    // A pattern of n tokens needs at least one token before it to occur earlier.
    for n in (1..=max_ngram.min(len.saturating_sub(1))).rev() {
        let pattern = &sequence[len - n..];
        // Starts before len - n: the match ends before the sequence does, so a token follows.
        let found = (0..len - n)
            .rev()
            .find(|&start| &sequence[start..start + n] == pattern);
        if let Some(start) = found {
            let follow = start + n;
            return sequence[follow..(follow + k).min(len)].to_vec();
        }
    }
    Vec::new()
}
