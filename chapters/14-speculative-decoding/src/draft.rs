//! What a drafter is: something that guesses the next few tokens cheaply, for the target model to
//! check. Given: the [`Drafter`] trait, the [`Draft`] it returns, the n-gram drafter built on
//! your `prompt_lookup` (`src/ngram.rs`), and the errors of this chapter. The draft model is in
//! `src/draft_model.rs`.

use mlx_rs::{error::Exception, Array};

/// Speculative decoding failed.
///
/// Given: you return these, you do not need to change them.
#[derive(Debug, thiserror::Error)]
pub enum SpeculativeError {
    #[error("the draft model's vocabulary ({draft} tokens) differs from the target's ({target}): a drafter must share the target's tokenizer")]
    VocabMismatch { target: i32, draft: i32 },
    #[error("nothing to continue: the prompt is empty")]
    EmptyPrompt,
    #[error("the draft has {drafted} tokens but {rows} rows of probabilities")]
    DraftShape { drafted: usize, rows: i32 },
    #[error(transparent)]
    Decode(#[from] decode::DecodeError),
    #[error("MLX: {0}")]
    Mlx(#[from] Exception),
}

/// The tokens a drafter proposes after a sequence, and how it chose them.
#[derive(Debug, Clone, Default)]
pub struct Draft {
    /// The proposed tokens, at most the `k` asked for (possibly none).
    pub tokens: Vec<u32>,
    /// `[k, V]`: row `i` is the distribution `q_i` that `tokens[i]` was drawn from. `None` when
    /// each token was chosen deterministically (greedy, or looked up), that is `q_i` is one-hot
    /// on `tokens[i]`.
    pub probabilities: Option<Array>,
}

impl Draft {
    /// `[k, V]`: the drafter's distributions, one-hot rows where it chose deterministically.
    pub fn probabilities_or_one_hot(&self, vocab_size: i32) -> Result<Array, SpeculativeError> {
        let rows = self.tokens.len() as i32;
        if let Some(probabilities) = &self.probabilities {
            if probabilities.shape() != [rows, vocab_size] {
                return Err(SpeculativeError::DraftShape {
                    drafted: self.tokens.len(),
                    rows: probabilities.shape().first().copied().unwrap_or(0),
                });
            }
            return Ok(probabilities.clone());
        }
        let mut one_hot = vec![0.0f32; (rows * vocab_size) as usize];
        for (row, &token) in self.tokens.iter().enumerate() {
            one_hot[row * vocab_size as usize + token as usize] = 1.0;
        }
        Ok(Array::from_slice(&one_hot, &[rows, vocab_size])) // [k, V]
    }
}

/// Proposes the tokens after a sequence, for the target model to verify.
///
/// Given.
pub trait Drafter {
    /// Up to `k` tokens that may follow `sequence` (the prompt and every token accepted so far).
    ///
    /// `sequence` may have dropped tokens the drafter proposed last time (the target rejected
    /// them) and gained others: a drafter that keeps state, like a draft model's cache, rewinds
    /// it to the longest prefix it shares with `sequence`.
    fn propose(&mut self, sequence: &[u32], k: usize) -> Result<Draft, SpeculativeError>;
}

/// Prompt lookup (n-gram) drafting: no second model, only the text so far. When the last few
/// tokens appeared earlier, propose what followed them then.
///
/// Given; the lookup is yours (book: week 3, chapter 14 (speculative decoding), task 1).
#[derive(Debug, Clone, Copy)]
pub struct NgramDrafter {
    /// The longest suffix looked up; shorter ones are tried down to a single token.
    pub max_ngram: usize,
}

impl Default for NgramDrafter {
    fn default() -> Self {
        NgramDrafter { max_ngram: 3 }
    }
}

impl Drafter for NgramDrafter {
    fn propose(&mut self, sequence: &[u32], k: usize) -> Result<Draft, SpeculativeError> {
        Ok(Draft {
            tokens: crate::prompt_lookup(sequence, self.max_ngram, k),
            probabilities: None,
        })
    }
}
