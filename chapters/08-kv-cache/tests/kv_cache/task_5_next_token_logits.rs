//! Task 5: CachedModel::next_token_logits

use crate::harness::{load_model, SMOLLM2, TINY_LOGITS};
use kv_cache::{
    generate, greedy, CachedModel, DenseLoader, GenerationOptions, LanguageModel, Linear,
    LinearLoader, LoadError, Model, ModelConfig, Tensors, Tokenizer,
};
use mlx_rs::{ops::indexing::IndexOp, Array};
use rstest::rstest;
use std::{cell::Cell, path::Path, rc::Rc};
use test_support::{
    assert_allclose, expect_ok as ok, fetched_model_dir, fixture_path, load_fixture,
    token_ids as ids,
};

/// A dense layer that counts the positions it runs: how many tokens went through the model.
struct Counting {
    inner: Box<dyn Linear>,
    positions: Rc<Cell<usize>>,
}

impl Linear for Counting {
    fn forward(&self, x: &Array) -> mlx_rs::error::Result<Array> {
        let width = *x.shape().last().expect("x has a last axis") as usize;
        self.positions
            .set(self.positions.get() + x.size() / width.max(1));
        self.inner.forward(x)
    }

    fn rows(&self, ids: &Array) -> mlx_rs::error::Result<Array> {
        self.inner.rows(ids)
    }

    fn shape(&self) -> (i32, i32) {
        self.inner.shape()
    }

    fn nbytes(&self) -> usize {
        self.inner.nbytes()
    }
}

/// Loads dense layers, counting the positions that go through layer 0's `q_proj`.
struct CountingLoader {
    positions: Rc<Cell<usize>>,
}

impl LinearLoader for CountingLoader {
    fn load(
        &self,
        name: &str,
        out_features: i32,
        in_features: i32,
        tensors: &mut Tensors,
    ) -> Result<Box<dyn Linear>, LoadError> {
        let layer = DenseLoader.load(name, out_features, in_features, tensors)?;
        if name != "model.layers.0.self_attn.q_proj" {
            return Ok(layer);
        }
        Ok(Box::new(Counting {
            inner: layer,
            positions: Rc::clone(&self.positions),
        }))
    }
}

/// A tiny model whose layer 0 counts the positions it runs.
fn counting_model(name: &str) -> (Model, Rc<Cell<usize>>) {
    let config = ok(
        ModelConfig::from_file(&fixture_path(&format!("{name}/config.json"))),
        "ModelConfig::from_file",
    );
    let weights = load_fixture(&format!("{name}/model.safetensors"));
    let positions = Rc::new(Cell::new(0));
    let loader = CountingLoader {
        positions: Rc::clone(&positions),
    };
    let model = ok(
        Model::from_weights(config, weights, &loader),
        "Model::from_weights",
    );
    (model, positions)
}

fn options(max_new_tokens: usize) -> GenerationOptions {
    GenerationOptions {
        max_new_tokens,
        stop_strings: Vec::new(),
        ignore_eos: true,
    }
}

fn tokenizer_at(dir: &Path) -> Tokenizer {
    ok(Tokenizer::load(dir), "Tokenizer::load")
}

#[rstest]
fn task_5_generate_with_the_cache_matches_transformers(
    #[values("llama-tiny", "qwen2-tiny", "qwen3-tiny")] model_name: &str,
    #[values(0, 1, 2)] sequence: usize,
) {
    let (model, positions) = counting_model(model_name);
    let tokenizer = tokenizer_at(&fixture_path(model_name));
    let reference = load_fixture(&format!("{model_name}/reference.safetensors"));
    let prompt = ids(&reference[&format!("seq{sequence}.tokens")]);
    let expected = ids(&reference[&format!("seq{sequence}.greedy_continuation")]);
    let mut cached = CachedModel::new(&model);
    let generation = ok(
        generate(
            &mut cached,
            &tokenizer,
            &prompt,
            &options(expected.len()),
            &mut greedy,
            &mut |_| {},
        ),
        "generate",
    );
    assert_eq!(
        generation.tokens, expected,
        "{model_name}, seq{sequence}: greedy continuation with the cache"
    );
    // The prompt runs once, then each chosen token but the last (which no step needed yet).
    let ran = prompt.len() + expected.len() - 1;
    assert_eq!(
        positions.get(),
        ran,
        "{model_name}, seq{sequence}: the model should run each of the {ran} tokens once (the prompt of {} once, then one token per step)",
        prompt.len()
    );
    for (layer, layer_cache) in cached.cache().iter().enumerate() {
        assert_eq!(
            layer_cache.offset(),
            ran as i32,
            "layer {layer}'s cache after generating"
        );
    }
}

/// Prompts 0 and 5: where the reference suppressed EOS (steps 29 and 22); prompt 3: the chat
/// prompt, the longest (39 tokens).
#[rstest]
#[case::capital(0)]
#[case::chat(3)]
#[case::arithmetic(5)]
fn task_5_smollm2_generate_with_the_cache_matches_transformers(#[case] prompt: usize) {
    let Some(dir) = fetched_model_dir(SMOLLM2) else {
        return;
    };
    let (model, tokenizer) = (load_model(&dir), tokenizer_at(&dir));
    let reference = load_fixture("smollm2/reference.safetensors");
    let tokens = ids(&reference[&format!("prompt{prompt}.tokens")]);
    let expected = ids(&reference[&format!("prompt{prompt}.greedy_continuation")]);
    let generation = ok(
        generate(
            &mut CachedModel::new(&model),
            &tokenizer,
            &tokens,
            &options(expected.len()),
            &mut greedy,
            &mut |_| {},
        ),
        "generate",
    );
    assert_eq!(
        generation.tokens, expected,
        "SmolLM2 prompt {prompt}: greedy continuation with the cache"
    );
}

/// One call of `next_token_logits` in [`task_5_a_new_sequence_reuses_the_common_prefix`].
struct Call {
    what: &'static str,
    sequence: Vec<u32>,
    /// The reference logits of the last token: (sequence, position) in reference.safetensors.
    expected: Option<(usize, i32)>,
    /// Positions the model must run: those after the common prefix, at least one.
    runs: usize,
}

#[rstest]
fn task_5_a_new_sequence_reuses_the_common_prefix(
    #[values("llama-tiny", "qwen2-tiny", "qwen3-tiny")] model_name: &str,
) {
    let (model, positions) = counting_model(model_name);
    let reference = load_fixture(&format!("{model_name}/reference.safetensors"));
    let seq = |index: usize| ids(&reference[&format!("seq{index}.tokens")]);
    let (seq0, seq1, seq2) = (seq(0), seq(1), seq(2));
    assert_eq!(seq0[..], seq1[..1], "seq0 is the first token of seq1");
    let diverging: Vec<u32> = seq1[..3].iter().copied().chain([7, 8, 9, 10]).collect();
    let calls = [
        Call {
            what: "a first prompt (seq2)",
            sequence: seq2.clone(),
            expected: Some((2, 15)),
            runs: 16,
        },
        Call {
            what: "a prompt sharing nothing with it (seq1)",
            sequence: seq1.clone(),
            expected: Some((1, 6)),
            runs: 7,
        },
        Call {
            what: "a prefix of what the cache holds (seq1[..4])",
            sequence: seq1[..4].to_vec(),
            expected: Some((1, 3)),
            runs: 1,
        },
        Call {
            what: "the same sequence again (seq1[..4])",
            sequence: seq1[..4].to_vec(),
            expected: Some((1, 3)),
            runs: 1,
        },
        Call {
            what: "its continuation by 3 tokens (seq1)",
            sequence: seq1.clone(),
            expected: Some((1, 6)),
            runs: 3,
        },
        Call {
            what: "a sequence diverging after 3 tokens (seq1[..3] + [7, 8, 9, 10])",
            sequence: diverging,
            expected: None,
            runs: 4,
        },
        Call {
            what: "seq1 again, diverging from that after 3 tokens",
            sequence: seq1.clone(),
            expected: Some((1, 6)),
            runs: 4,
        },
        Call {
            what: "its first token alone (seq0)",
            sequence: seq0,
            expected: Some((0, 0)),
            runs: 1,
        },
        Call {
            what: "seq2[..8]",
            sequence: seq2[..8].to_vec(),
            expected: Some((2, 7)),
            runs: 8,
        },
    ];
    let mut cached = CachedModel::new(&model);
    for (index, call) in calls.iter().enumerate() {
        let before = positions.get();
        let logits = ok(
            cached.next_token_logits(&call.sequence),
            "CachedModel::next_token_logits",
        );
        let what = format!("{model_name}, call {index}, {}", call.what);
        assert_eq!(
            positions.get() - before,
            call.runs,
            "{what}: how many tokens the model ran (the rest should come from the cache)"
        );
        for (layer, layer_cache) in cached.cache().iter().enumerate() {
            assert_eq!(
                layer_cache.offset(),
                call.sequence.len() as i32,
                "{what}: layer {layer}'s cache should hold the whole sequence"
            );
        }
        if let Some((sequence, position)) = call.expected {
            let expected = reference[&format!("seq{sequence}.logits")].index(position);
            assert_allclose(
                &logits,
                &expected,
                TINY_LOGITS,
                &format!("{what}: logits of the last token"),
            );
        }
    }
}
