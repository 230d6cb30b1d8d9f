//! Chapter 8 tests. Run them with `cargo xtask test kv-cache` (add `--task N` for one task).
//! The cache is compared with MLX's own concatenation of everything it was given; attention
//! outputs, logits and continuations with HF transformers' (models/fixtures/), never with our own
//! output.

use kv_cache::{
    generate, greedy, AttentionConfig, AttentionLayers, CachedAttention, CachedModel, DenseLinear,
    DenseLoader, GenerationOptions, Kernels, KvCache, LanguageModel, Linear, LinearLoader,
    LoadError, Model, ModelConfig, Tensors, Tokenizer, STEP,
};
use mlx_rs::{fast, ops, ops::indexing::IndexOp, Array, Dtype};
use rstest::rstest;
use std::{cell::Cell, path::Path, rc::Rc};
use test_support::{
    assert_allclose, expect_ok as ok, expect_ok, fetched_model_dir, fixture_path, load_fixture,
    load_tiny_model, random_array, token_ids as ids, TinyModel, Tolerance,
};

const SMOLLM2: &str = "smollm2-135m-instruct";

/// Copies are exact: the cache must give back the very values it was given.
const EXACT: Tolerance = Tolerance {
    rtol: 0.0,
    atol: 0.0,
};

/// Tiny-model logits, as in chapter 5: three float32 layers summed in another order than
/// PyTorch's differ by up to ~6e-5 on logits of magnitude up to ~20.
const TINY_LOGITS: Tolerance = Tolerance {
    rtol: 1e-5,
    atol: 1e-4,
};

fn tokens_array(tokens: &[u32]) -> Array {
    Array::from_slice(tokens, &[1, tokens.len() as i32]) // [1, L]
}

fn load_model(dir: &Path) -> Model {
    Model::load(dir).unwrap_or_else(|error| panic!("Model::load({}): {error}", dir.display()))
}

/// Seeded random keys and values `[B, H_kv, L, D]`, different from each other.
fn random_kv(shape: [i32; 4], dtype: Dtype, seed: u64) -> (Array, Array) {
    (
        random_array(&shape, dtype, 2 * seed),
        random_array(&shape, dtype, 2 * seed + 1),
    )
}

fn concatenate(parts: &[Array], axis: i32) -> Array {
    expect_ok(ops::concatenate(parts, axis), "ops::concatenate")
}

fn update(cache: &mut KvCache, keys: &Array, values: &Array) -> (Array, Array) {
    expect_ok(
        cache.update_and_fetch(keys, values),
        "KvCache::update_and_fetch",
    )
}

/// Log-probabilities of logits `[..., V]`, to compare SmolLM2 as chapter 5 does.
fn log_probabilities(logits: &Array) -> Array {
    let lse = ops::logsumexp_axis(logits, -1, true).unwrap();
    logits.subtract(&lse).unwrap()
}

// ---------------------------------------------------------------------------------------------
// Task 1: KvCache::update_and_fetch

#[rstest]
#[case::single_sequence_f32([1, 2, 8], Dtype::Float32, &[5, 1, 1, 3])]
#[case::batch_f16_across_a_step([2, 3, 16], Dtype::Float16, &[7, 1, 250, 1, 2])]
#[case::batch_bf16_whole_steps([3, 1, 4], Dtype::Bfloat16, &[256, 1, 255, 1, 300])]
fn task_1_update_and_fetch_returns_every_position_so_far(
    #[case] shape: [i32; 3],
    #[case] dtype: Dtype,
    #[case] lengths: &[i32],
) {
    let [batch, heads, head_dim] = shape;
    let mut cache = KvCache::new();
    let (mut all_keys, mut all_values) = (Vec::new(), Vec::new());
    let mut offset = 0;
    for (step, &length) in lengths.iter().enumerate() {
        let (keys, values) = random_kv([batch, heads, length, head_dim], dtype, step as u64);
        all_keys.push(keys.clone());
        all_values.push(values.clone());
        offset += length;
        let (got_keys, got_values) = update(&mut cache, &keys, &values);
        let what = |name: &str| {
            format!("{name} after update {step} ({length} tokens, lengths {lengths:?}, {dtype:?})")
        };
        assert_eq!(got_keys.dtype(), dtype, "{}: dtype", what("keys"));
        assert_allclose(&got_keys, &concatenate(&all_keys, 2), EXACT, &what("keys"));
        assert_allclose(
            &got_values,
            &concatenate(&all_values, 2),
            EXACT,
            &what("values"),
        );
        assert_eq!(cache.offset(), offset, "{}: offset", what("the cache"));
        let capacity = cache.capacity();
        assert!(
            capacity >= offset && capacity % STEP == 0,
            "{}: capacity {capacity} should be a multiple of STEP = {STEP} and hold all {offset} positions",
            what("the cache")
        );
    }
}

#[rstest]
#[case::one_token(&[1], 256)]
#[case::a_whole_step(&[256], 256)]
#[case::one_past_a_step(&[257], 512)]
#[case::filling_a_step_in_parts(&[200, 56], 256)]
#[case::then_one_more(&[200, 56, 1], 512)]
fn task_1_capacity_grows_in_whole_steps(#[case] lengths: &[i32], #[case] expected: i32) {
    let mut cache = KvCache::new();
    for (step, &length) in lengths.iter().enumerate() {
        let (keys, values) = random_kv([1, 2, length, 4], Dtype::Float32, step as u64);
        update(&mut cache, &keys, &values);
    }
    assert_eq!(
        cache.capacity(),
        expected,
        "capacity after updates of {lengths:?} tokens (STEP = {STEP})"
    );
}

#[test]
fn task_1_single_tokens_are_written_in_place() {
    // Decoding: one token per step. The storage grows once per STEP tokens, not once per token.
    let mut cache = KvCache::new();
    let (mut all_keys, mut all_values) = (Vec::new(), Vec::new());
    let mut fetched = None;
    for step in 0..STEP + 1 {
        let (keys, values) = random_kv([1, 2, 1, 8], Dtype::Float32, step as u64);
        all_keys.push(keys.clone());
        all_values.push(values.clone());
        let (got_keys, got_values) = update(&mut cache, &keys, &values);
        ok(mlx_rs::transforms::eval([&got_keys, &got_values]), "eval");
        let expected = if step < STEP { STEP } else { 2 * STEP };
        assert_eq!(
            cache.capacity(),
            expected,
            "capacity after {} single-token updates",
            step + 1
        );
        fetched = Some((got_keys, got_values));
    }
    let (keys, values) = fetched.expect("at least one update");
    let what = format!("after {} single-token updates", STEP + 1);
    assert_allclose(
        &keys,
        &concatenate(&all_keys, 2),
        EXACT,
        &format!("keys {what}"),
    );
    assert_allclose(
        &values,
        &concatenate(&all_values, 2),
        EXACT,
        &format!("values {what}"),
    );
}

#[rstest]
#[case::batch([2, 2, 3, 8], [1, 2, 1, 8])]
#[case::kv_heads([1, 2, 3, 8], [1, 4, 1, 8])]
#[case::head_dim([1, 2, 3, 8], [1, 2, 1, 16])]
fn task_1_mismatched_keys_are_an_error(#[case] first: [i32; 4], #[case] second: [i32; 4]) {
    let mut cache = KvCache::new();
    let (keys, values) = random_kv(first, Dtype::Float32, 1);
    update(&mut cache, &keys, &values);
    let (keys, values) = random_kv(second, Dtype::Float32, 2);
    assert!(
        cache.update_and_fetch(&keys, &values).is_err(),
        "keys {second:?} cannot join a cache of {first:?}: update_and_fetch must return an Err"
    );
    assert_eq!(
        cache.offset(),
        first[2],
        "a failed update must leave the cache as it was"
    );
}

// ---------------------------------------------------------------------------------------------
// Task 2: KvCache::truncate and KvCache::nbytes

#[rstest]
#[case::rewind_a_few(&[6, 4], 7, 3)]
#[case::to_empty(&[5], 0, 2)]
#[case::keep_everything(&[5], 5, 1)]
#[case::keep_a_prefix_of_two_steps(&[300, 1], 100, 1)]
fn task_2_truncate_then_update_continues_the_kept_prefix(
    #[case] before: &[i32],
    #[case] keep: i32,
    #[case] new_length: i32,
) {
    let shape = |length| [2, 2, length, 8];
    let mut cache = KvCache::new();
    let (mut all_keys, mut all_values) = (Vec::new(), Vec::new());
    for (step, &length) in before.iter().enumerate() {
        let (keys, values) = random_kv(shape(length), Dtype::Float32, step as u64);
        update(&mut cache, &keys, &values);
        all_keys.push(keys);
        all_values.push(values);
    }
    let capacity = cache.capacity();
    expect_ok(cache.truncate(keep), "KvCache::truncate");
    assert_eq!(cache.offset(), keep, "offset after truncate({keep})");
    assert_eq!(
        cache.capacity(),
        capacity,
        "truncate keeps the storage: the capacity should not change"
    );

    let (keys, values) = random_kv(shape(new_length), Dtype::Float32, 99);
    let (got_keys, got_values) = update(&mut cache, &keys, &values);
    let kept = |parts: &[Array]| concatenate(parts, 2).index((.., .., ..keep, ..));
    let what = format!("after updates of {before:?}, truncate({keep}) and {new_length} new tokens");
    assert_allclose(
        &got_keys,
        &concatenate(&[kept(&all_keys), keys], 2),
        EXACT,
        &format!("keys {what}"),
    );
    assert_allclose(
        &got_values,
        &concatenate(&[kept(&all_values), values], 2),
        EXACT,
        &format!("values {what}"),
    );
    assert_eq!(cache.offset(), keep + new_length);
}

#[test]
fn task_2_truncating_beyond_the_cache_is_an_error() {
    let mut empty = KvCache::new();
    assert!(
        empty.truncate(0).is_ok(),
        "an empty cache can be truncated to 0"
    );
    assert!(
        empty.truncate(1).is_err(),
        "an empty cache cannot be truncated to 1"
    );
    let mut cache = KvCache::new();
    let (keys, values) = random_kv([1, 2, 5, 8], Dtype::Float32, 1);
    update(&mut cache, &keys, &values);
    for length in [6, -1] {
        assert!(
            cache.truncate(length).is_err(),
            "a cache of 5 positions cannot be truncated to {length}"
        );
        assert_eq!(
            cache.offset(),
            5,
            "a failed truncate({length}) must leave the cache as it was"
        );
    }
}

#[rstest]
#[case::f32_one_step(1, 2, 16, Dtype::Float32, 4, 10, 256)]
#[case::f16_batch_two_steps(2, 3, 64, Dtype::Float16, 2, 300, 512)]
#[case::bf16_exactly_a_step(1, 4, 8, Dtype::Bfloat16, 2, 256, 256)]
fn task_2_nbytes_counts_keys_and_values_at_capacity(
    #[case] batch: i32,
    #[case] heads: i32,
    #[case] head_dim: i32,
    #[case] dtype: Dtype,
    #[case] dtype_bytes: usize,
    #[case] length: i32,
    #[case] capacity: usize,
) {
    let mut cache = KvCache::new();
    assert_eq!(cache.nbytes(), 0, "an empty cache stores nothing");
    let (keys, values) = random_kv([batch, heads, length, head_dim], dtype, 3);
    update(&mut cache, &keys, &values);
    let expected = 2 * batch as usize * heads as usize * head_dim as usize * capacity * dtype_bytes;
    assert_eq!(
        cache.nbytes(),
        expected,
        "2 (K and V) x B {batch} x H_kv {heads} x D {head_dim} x capacity {capacity} x {dtype_bytes} bytes ({dtype:?})"
    );
    expect_ok(cache.truncate(1), "KvCache::truncate");
    assert_eq!(cache.nbytes(), expected, "truncate keeps the storage");
}

// ---------------------------------------------------------------------------------------------
// Task 3: CachedAttention::forward

/// Layer `layer`'s attention of a tiny model, its weights read by their HF names.
fn attention_layer(model: &TinyModel, layer: i32) -> CachedAttention {
    let c = &model.config;
    let config = AttentionConfig {
        hidden_size: c.hidden_size,
        num_heads: c.num_attention_heads,
        num_kv_heads: c.num_key_value_heads,
        head_dim: c.head_dim,
        rope_theta: c.rope_theta,
        rms_norm_eps: c.rms_norm_eps,
    };
    let name = |part: &str| format!("model.layers.{layer}.self_attn.{part}");
    let linear = |projection: &str| -> Box<dyn Linear> {
        Box::new(DenseLinear::new(
            model.weight(&name(&format!("{projection}.weight"))),
            model.maybe_weight(&name(&format!("{projection}.bias"))),
        ))
    };
    let layers = AttentionLayers {
        q_proj: linear("q_proj"),
        k_proj: linear("k_proj"),
        v_proj: linear("v_proj"),
        o_proj: linear("o_proj"),
        q_norm: model.maybe_weight(&name("q_norm.weight")),
        k_norm: model.maybe_weight(&name("k_norm.weight")),
    };
    CachedAttention::new(config, layers)
}

/// The reference is float32 PyTorch, checked against a float64 NumPy model to within 1e-5 of the
/// tensor's largest value (or of 1) by models/fixtures/generate.py: allow that much difference.
fn hf_tolerance(expected: &Array) -> Tolerance {
    let largest = expected
        .abs()
        .unwrap()
        .max(None)
        .unwrap()
        .item_exact::<f32>();
    Tolerance {
        rtol: 1e-5,
        atol: 1e-5 * f64::from(largest.max(1.0)),
    }
}

/// Runs `x` `[1, L, E]` through `attention` as a prefill of `prefill` tokens, then chunks of
/// `chunk` tokens, and returns the outputs joined back into `[1, L, E]`.
fn run_in_chunks(
    attention: &CachedAttention,
    x: &Array,
    prefill: i32,
    chunk: i32,
    cache: &mut KvCache,
) -> Array {
    let length = x.shape()[1];
    let mut outputs = Vec::new();
    let mut start = 0;
    while start < length {
        let end = if start == 0 {
            prefill
        } else {
            (start + chunk).min(length)
        };
        let part = x.index((.., start..end, ..));
        outputs.push(expect_ok(
            attention.forward(&part, cache),
            "CachedAttention::forward",
        ));
        start = end;
    }
    concatenate(&outputs, 1)
}

/// Every layer of a tiny model on sequence 2 (16 tokens), fed in pieces, against HF's attention
/// output for the whole sequence at once. The input of layer n's attention is the residual
/// stream before the layer (HF's embeddings, or HF's output of layer n-1), normalized by the
/// layer's input_layernorm (computed here with fast::rms_norm).
#[rstest]
#[case::prefill_1_then_single_tokens(1, 1)]
#[case::prefill_3_then_single_tokens(3, 1)]
#[case::prefill_15_then_one_token(15, 1)]
#[case::whole_sequence(16, 1)]
#[case::prefill_5_then_chunks_of_4(5, 4)]
fn task_3_cached_attention_matches_transformers(
    #[values("llama-tiny", "qwen2-tiny", "qwen3-tiny")] model: &str,
    #[case] prefill: i32,
    #[case] chunk: i32,
) {
    let model = load_tiny_model(model);
    let sequence = 2;
    for layer in 0..model.config.num_hidden_layers {
        let residual = match layer {
            0 => model.reference(&format!("seq{sequence}.embeddings")),
            _ => model.reference(&format!("seq{sequence}.layer{}.output", layer - 1)),
        }
        .expand_dims(0) // [1, L, E]
        .unwrap();
        let norm = model.weight(&format!("model.layers.{layer}.input_layernorm.weight"));
        let x = fast::rms_norm(&residual, Some(&norm), model.config.rms_norm_eps).unwrap();
        let mut cache = KvCache::new();
        let got = run_in_chunks(
            &attention_layer(&model, layer),
            &x,
            prefill,
            chunk,
            &mut cache,
        );
        let expected = model
            .reference(&format!("seq{sequence}.layer{layer}.attention_output"))
            .expand_dims(0)
            .unwrap();
        // PyTorch sums the float32 products in another order than MLX, and here the new
        // tokens' products are summed in pieces: as in chapter 4, allow 1e-5 of the largest value.
        let tolerance = hf_tolerance(&expected);
        let what = format!(
            "{} attention of layer {layer} (prefill {prefill}, then chunks of {chunk})",
            model.name
        );
        assert_allclose(&got, &expected, tolerance, &what);
        assert_eq!(
            cache.offset(),
            x.shape()[1],
            "{what}: the cache should hold every position"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Task 4: Model::forward

/// Runs `tokens` `[B, L]` through `model` as a prefill of `prefill` tokens then one token per
/// step, and returns the logits joined back into `[B, L, V]`.
fn prefill_then_decode(model: &Model, tokens: &Array, prefill: i32) -> (Array, Vec<KvCache>) {
    let mut cache = model.new_cache();
    let length = tokens.shape()[1];
    let mut logits = vec![expect_ok(
        model.forward(&tokens.index((.., ..prefill)), &mut cache),
        "Model::forward (prefill)",
    )];
    for position in prefill..length {
        logits.push(expect_ok(
            model.forward(&tokens.index((.., position..position + 1)), &mut cache),
            "Model::forward (one token)",
        ));
    }
    (concatenate(&logits, 1), cache)
}

#[rstest]
#[case::one_token(0, 1)]
#[case::seq1_prefill_1(1, 1)]
#[case::seq1_prefill_6(1, 6)]
#[case::seq1_prefill_all(1, 7)]
#[case::seq2_prefill_1(2, 1)]
#[case::seq2_prefill_3(2, 3)]
#[case::seq2_prefill_15(2, 15)]
#[case::seq2_prefill_all(2, 16)]
fn task_4_prefill_then_decode_matches_transformers(
    #[values("llama-tiny", "qwen2-tiny", "qwen3-tiny")] model_name: &str,
    #[values(Kernels::Course, Kernels::Fused)] kernels: Kernels,
    #[case] sequence: usize,
    #[case] prefill: i32,
) {
    // Fused: your forward pass and cache around MLX's norm, RoPE and attention kernels.
    let model = load_model(&fixture_path(model_name)).with_kernels(kernels);
    let reference = load_fixture(&format!("{model_name}/reference.safetensors"));
    let tokens = reference[&format!("seq{sequence}.tokens")]
        .expand_dims(0)
        .unwrap(); // [1, L]
    let (logits, cache) = prefill_then_decode(&model, &tokens, prefill);
    assert_eq!(logits.dtype(), Dtype::Float32, "logits are float32");
    assert_allclose(
        &logits.index(0),
        &reference[&format!("seq{sequence}.logits")],
        TINY_LOGITS,
        &format!(
            "{model_name} logits of seq{sequence} ({kernels:?} kernels, prefill {prefill}, then one token per step)"
        ),
    );
    let length = tokens.shape()[1];
    for (layer, layer_cache) in cache.iter().enumerate() {
        assert_eq!(
            layer_cache.offset(),
            length,
            "layer {layer}'s cache should hold all {length} positions"
        );
    }
}

/// Two different sequences in one batch: seq1 (7 tokens) and the first 7 tokens of seq2, whose
/// logits are HF's first 7 positions of seq2 (attention is causal).
#[rstest]
fn task_4_a_batch_of_two_sequences_matches_transformers(
    #[values("llama-tiny", "qwen2-tiny", "qwen3-tiny")] model_name: &str,
) {
    let model = load_model(&fixture_path(model_name));
    let reference = load_fixture(&format!("{model_name}/reference.safetensors"));
    let rows = [
        reference["seq1.tokens"].clone(),
        reference["seq2.tokens"].index(..7),
    ];
    let tokens = ok(ops::stack(&rows, 0), "ops::stack"); // [2, 7]
    let (logits, _) = prefill_then_decode(&model, &tokens, 4);
    let expected = [
        reference["seq1.logits"].clone(),
        reference["seq2.logits"].index(..7),
    ];
    for (row, expected) in expected.iter().enumerate() {
        assert_allclose(
            &logits.index(row as i32),
            expected,
            TINY_LOGITS,
            &format!("{model_name} logits of batch row {row} (prefill 4, then one token per step)"),
        );
    }
}

/// After a prefill, each layer's cache holds `H_kv` heads (not repeated to `H_q`) in float32:
/// layers x 2 x kv_heads x head_dim x capacity x 4 bytes.
#[rstest]
fn task_4_the_cache_holds_kv_heads_only(
    #[values("llama-tiny", "qwen2-tiny", "qwen3-tiny")] model_name: &str,
) {
    let model = load_model(&fixture_path(model_name));
    let reference = load_fixture(&format!("{model_name}/reference.safetensors"));
    let tokens = reference["seq2.tokens"].expand_dims(0).unwrap(); // [1, 16]
    let mut cache = model.new_cache();
    expect_ok(model.forward(&tokens, &mut cache), "Model::forward");
    let config = model.config();
    let expected = config.num_hidden_layers as usize
        * 2
        * config.num_key_value_heads as usize
        * config.head_dim as usize
        * STEP as usize
        * 4;
    let total: usize = cache.iter().map(KvCache::nbytes).sum();
    assert_eq!(
        total, expected,
        "{model_name}: {} layers x 2 x {} kv heads x head_dim {} x capacity {STEP} x 4 bytes",
        config.num_hidden_layers, config.num_key_value_heads, config.head_dim
    );
}

#[rstest]
#[case::one_layer_short(-1)]
#[case::one_layer_too_many(1)]
fn task_4_a_cache_of_the_wrong_length_is_an_error(#[case] extra: i32) {
    let model = load_model(&fixture_path("llama-tiny"));
    let layers = model.config().num_hidden_layers + extra;
    let mut cache: Vec<KvCache> = (0..layers).map(|_| KvCache::new()).collect();
    assert!(
        model
            .forward(&tokens_array(&[300, 385]), &mut cache)
            .is_err(),
        "a cache of {layers} layers for a model of {} must be an Err",
        model.config().num_hidden_layers
    );
}

/// SmolLM2's prompts, all but the last `stepped` tokens as a prefill and the rest one at a time:
/// the last logits against transformers' (which ran each prompt at once).
#[test]
fn task_4_smollm2_stepped_prompts_match_transformers() {
    let Some(dir) = fetched_model_dir(SMOLLM2) else {
        return;
    };
    let model = load_model(&dir);
    let reference = load_fixture("smollm2/reference.safetensors");
    let stepped = 3;
    for prompt in 0.. {
        let Some(tokens) = reference.get(&format!("prompt{prompt}.tokens")) else {
            break;
        };
        let tokens = tokens.expand_dims(0).unwrap(); // [1, L]
        let (logits, _) = prefill_then_decode(&model, &tokens, tokens.shape()[1] - stepped);
        let last = logits.index((0, -1)); // [V]
        let expected = &reference[&format!("prompt{prompt}.last_logits")];
        // As in chapter 5: 30 float32 layers differ by up to 5e-5; 1e-3 is far below the top-2
        // margins (> 0.016).
        let tolerance = Tolerance {
            rtol: 0.0,
            atol: 1e-3,
        };
        assert_allclose(
            &log_probabilities(&last),
            &log_probabilities(expected),
            tolerance,
            &format!(
                "SmolLM2 log-probabilities of prompt {prompt} (last {stepped} tokens stepped)"
            ),
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Task 5: CachedModel::next_token_logits

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
