//! What the sampler is asked to do: temperature, filters, penalty and seed.

/// How the sampler turns logits into a token.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SamplingParams {
    /// 0 means greedy (the argmax); otherwise the logits are divided by it.
    pub temperature: f32,
    /// Keep only the `k` most probable tokens.
    pub top_k: Option<usize>,
    /// Keep the smallest set of most probable tokens whose probabilities sum to `top_p`.
    pub top_p: Option<f32>,
    /// Keep the tokens at least `min_p` times as probable as the most probable one.
    pub min_p: Option<f32>,
    /// Penalize the tokens seen so far (above 1 discourages repeating them).
    pub repetition_penalty: Option<f32>,
    /// Seeds the random draws: the same seed and logits give the same tokens.
    pub seed: u64,
}

impl Default for SamplingParams {
    /// Greedy decoding: temperature 0, no filters, no penalty, seed 0.
    fn default() -> Self {
        SamplingParams {
            temperature: 0.0,
            top_k: None,
            top_p: None,
            min_p: None,
            repetition_penalty: None,
            seed: 0,
        }
    }
}
