//! What the tests of every task share: the tiny models and their references, plain greedy
//! decoding with chapter 8's cache (the reference for prompts transformers did not run), and
//! speculative generation with given options.

use speculative_decoding::{
    generate, greedy, CachedModel, Drafter, Generation, GenerationOptions, Model, SamplingParams,
    SpeculativeGeneration, SpeculativeOptions, Tokenizer,
};
use std::path::Path;
use test_support::{expect_ok as ok, fixture_path, load_fixture, token_ids};

/// The tiny models' vocabulary (one tokenizer for all three).
pub const TINY_VOCAB: i32 = 512;

pub fn load_model(dir: &Path) -> Model {
    Model::load(dir).unwrap_or_else(|error| panic!("Model::load({}): {error}", dir.display()))
}

pub fn tiny_model(name: &str) -> Model {
    load_model(&fixture_path(name))
}

pub fn tokenizer_at(dir: &Path) -> Tokenizer {
    ok(Tokenizer::load(dir), "Tokenizer::load")
}

/// `seq{index}.tokens` and `seq{index}.greedy_continuation` (16 tokens, EOS never the argmax) of
/// a tiny model's transformers reference.
pub fn reference_sequence(model_name: &str, index: usize) -> (Vec<u32>, Vec<u32>) {
    let reference = load_fixture(&format!("{model_name}/reference.safetensors"));
    (
        token_ids(&reference[&format!("seq{index}.tokens")]),
        token_ids(&reference[&format!("seq{index}.greedy_continuation")]),
    )
}

pub fn options(max_new_tokens: usize) -> GenerationOptions {
    GenerationOptions {
        max_new_tokens,
        stop_strings: Vec::new(),
        ignore_eos: false,
    }
}

/// Chapter 8's dense cache and chapter 6's loop, greedy, one token per forward pass.
pub fn plain_greedy(
    model: &Model,
    tokenizer: &Tokenizer,
    prompt: &[u32],
    options: &GenerationOptions,
) -> Generation {
    ok(
        generate(
            &mut CachedModel::new(model),
            tokenizer,
            prompt,
            options,
            &mut greedy,
            &mut |_| {},
        ),
        "generate with chapter 8's cache",
    )
}

/// The learner's speculative generation; also returns the text streamed through `on_text`.
pub fn speculate(
    target: &Model,
    drafter: &mut dyn Drafter,
    tokenizer: &Tokenizer,
    prompt: &[u32],
    generation: &GenerationOptions,
    sampling: SamplingParams,
    k: usize,
) -> (SpeculativeGeneration, String) {
    let options = SpeculativeOptions {
        generation: generation.clone(),
        sampling,
        num_draft_tokens: k,
    };
    let mut streamed = String::new();
    let result = ok(
        speculative_decoding::speculative_generate(
            target,
            drafter,
            tokenizer,
            prompt,
            &options,
            &mut |text| streamed.push_str(text),
        ),
        "speculative_generate",
    );
    (result, streamed)
}

/// Which drafter a test runs (task 5, alone and batched).
#[derive(Debug, Clone, Copy)]
pub enum Drafting {
    /// The target drafts for itself: every greedy draft token is accepted.
    Itself,
    /// Another tiny model (same tokenizer, different weights): most drafts are rejected.
    OtherModel,
    /// Prompt lookup.
    Ngram,
}

/// The tiny model after `name` in the list: a drafter that mostly disagrees with it.
pub fn other_tiny(name: &str) -> &'static str {
    match name {
        "llama-tiny" => "qwen2-tiny",
        "qwen2-tiny" => "qwen3-tiny",
        _ => "llama-tiny",
    }
}
