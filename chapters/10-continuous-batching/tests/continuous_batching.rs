//! Chapter 10 tests. Run them with `cargo xtask test continuous-batching` (add `--task N` for one
//! task). The batched cache is compared with MLX's own concatenation of what each row was given,
//! and its masks with matrices written out by hand; logits and generated tokens with HF
//! transformers' (models/fixtures/) or, for prompts transformers did not run, with chapter 8's
//! generation of each request alone. Never with the batch's own output.

use continuous_batching::{
    generate, greedy, BatchKvCache, CachedModel, DenseLoader, Event, FinishReason,
    GenerationOptions, Kernels, KvCache, LayerCache, Model, ModelConfig, Offset, Request,
    SamplingParams, Scheduler, SchedulerConfig, Tokenizer,
};
use mlx_rs::{ops, ops::indexing::IndexOp, Array, Dtype};
use rstest::rstest;
use std::{
    collections::{BTreeMap, HashMap},
    path::Path,
};
use test_support::{
    assert_allclose, expect_ok as ok, expect_ok, fetched_model_dir, fixture_path, load_fixture,
    random_array, token_ids as ids, Tolerance,
};

const SMOLLM2: &str = "smollm2-135m-instruct";

/// Copies are exact: the cache must give back the very values it was given.
const EXACT: Tolerance = Tolerance {
    rtol: 0.0,
    atol: 0.0,
};

/// Tiny-model logits, as in chapters 5 and 8: three float32 layers summed in another order than
/// PyTorch's differ by up to ~6e-5 on logits of magnitude up to ~20.
const TINY_LOGITS: Tolerance = Tolerance {
    rtol: 1e-5,
    atol: 1e-4,
};

fn load_model(dir: &Path) -> Model {
    Model::load(dir).unwrap_or_else(|error| panic!("Model::load({}): {error}", dir.display()))
}

fn concatenate(parts: &[Array], axis: i32) -> Array {
    expect_ok(ops::concatenate(parts, axis), "ops::concatenate")
}

// ---------------------------------------------------------------------------------------------
// The batched cache, driven by a list of operations (tasks 1 and 2)

/// Heads and head size of the keys in the cache tests.
const HEADS: i32 = 2;
const HEAD_DIM: i32 = 8;

#[derive(Clone, Copy, Debug)]
enum Op {
    /// A sequence of this many tokens joins as the last row.
    Add(i32),
    /// Every row gets this many new tokens (`update_and_fetch`).
    Update(i32),
    /// This row leaves.
    Remove(usize),
}
use Op::{Add, Remove, Update};

/// A [`BatchKvCache`] with, beside it, every key and value each row was given, to build what it
/// should return with MLX's own concatenation.
struct Tracked {
    cache: BatchKvCache,
    dtype: Dtype,
    /// Per row: the keys and values it was given, in order, each `[1, H, n, D]`.
    rows: Vec<(Vec<Array>, Vec<Array>)>,
    seed: u64,
    done: Vec<Op>,
}

impl Tracked {
    fn new(dtype: Dtype) -> Self {
        Tracked {
            cache: BatchKvCache::new(),
            dtype,
            rows: Vec::new(),
            seed: 0,
            done: Vec::new(),
        }
    }

    /// Seeded random keys and values of `shape`, different at every call.
    fn random_kv(&mut self, shape: [i32; 4]) -> (Array, Array) {
        self.seed += 2;
        (
            random_array(&shape, self.dtype, self.seed),
            random_array(&shape, self.dtype, self.seed + 1),
        )
    }

    fn lengths(&self) -> Vec<i32> {
        self.rows
            .iter()
            .map(|(keys, _)| keys.iter().map(|part| part.shape()[2]).sum())
            .collect()
    }

    /// Applies `op`; for an update, returns what `update_and_fetch` returned.
    fn apply(&mut self, op: Op) -> Option<(Array, Array)> {
        self.done.push(op);
        match op {
            Add(length) => {
                let (keys, values) = self.random_kv([1, HEADS, length, HEAD_DIM]);
                ok(
                    self.cache.add(&keys, &values),
                    &format!("BatchKvCache::add after {:?}", self.done),
                );
                self.rows.push((vec![keys], vec![values]));
                None
            }
            Update(length) => {
                let batch = self.rows.len() as i32;
                let (keys, values) = self.random_kv([batch, HEADS, length, HEAD_DIM]);
                for (row, (row_keys, row_values)) in self.rows.iter_mut().enumerate() {
                    let row = row as i32;
                    row_keys.push(keys.index(row..row + 1));
                    row_values.push(values.index(row..row + 1));
                }
                Some(ok(
                    self.cache.update_and_fetch(&keys, &values),
                    &format!("BatchKvCache::update_and_fetch after {:?}", self.done),
                ))
            }
            Remove(row) => {
                ok(
                    self.cache.remove(row),
                    &format!("BatchKvCache::remove after {:?}", self.done),
                );
                self.rows.remove(row);
                None
            }
        }
    }

    /// Every row's keys (or values) so far, right-aligned: zeros on the left up to the longest
    /// row, `[B, H, longest, D]`.
    fn expected(&self, values: bool) -> Array {
        let longest = self.lengths().into_iter().max().unwrap_or(0);
        let rows: Vec<Array> = self
            .rows
            .iter()
            .zip(self.lengths())
            .map(|((keys, vals), length)| {
                let zeros = ops::zeros_dtype(&[1, HEADS, longest - length, HEAD_DIM], self.dtype)
                    .expect("MLX makes zeros");
                let mut parts = vec![zeros];
                parts.extend(if values { vals } else { keys }.iter().cloned());
                concatenate(&parts, 2) // [1, H, longest, D]
            })
            .collect();
        concatenate(&rows, 0)
    }

    /// `lengths()` and `positions()` both give each row's token count.
    fn check_lengths(&self) {
        let expected = self.lengths();
        let what = format!("after {:?}", self.done);
        assert_eq!(self.cache.len(), expected.len(), "len() {what}");
        assert_eq!(
            self.cache.is_empty(),
            expected.is_empty(),
            "is_empty() {what}"
        );
        assert_eq!(
            self.cache.lengths(),
            &expected[..],
            "lengths() {what}: each row's number of tokens"
        );
        match self.cache.positions() {
            Offset::PerRow(positions) => assert_eq!(
                positions,
                &expected[..],
                "positions() {what}: row b's next token is at position lengths[b]"
            ),
            other => panic!("positions() {what} should be Offset::PerRow, got {other:?}"),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Task 1: BatchKvCache::add and BatchKvCache::remove

#[rstest]
#[case::first_sequence(&[Add(5)])]
#[case::a_shorter_one_joins(&[Add(5), Add(2)])]
#[case::a_longer_one_joins(&[Add(2), Add(5)])]
#[case::three_then_remove_the_first(&[Add(5), Add(2), Add(7), Remove(0)])]
#[case::remove_the_middle(&[Add(5), Add(2), Add(7), Remove(1)])]
#[case::remove_every_row(&[Add(3), Add(4), Remove(1), Remove(0)])]
#[case::empty_then_refilled(&[Add(3), Remove(0), Add(6), Add(1)])]
fn task_1_rows_keep_their_lengths_and_positions(#[case] ops: &[Op]) {
    let mut tracked = Tracked::new(Dtype::Float32);
    tracked.check_lengths();
    for &op in ops {
        tracked.apply(op);
        tracked.check_lengths();
    }
}

/// Bytes of one column of one row: keys and values, `H x D` float32 each.
const COLUMN_BYTES: usize = 2 * HEADS as usize * HEAD_DIM as usize * 4;

/// The columns of storage per row that `nbytes` implies, checking that it is a whole number.
fn columns(cache: &BatchKvCache, what: &str) -> usize {
    let per_column = COLUMN_BYTES * cache.len();
    let bytes = cache.nbytes();
    assert_eq!(
        bytes % per_column,
        0,
        "{what}: nbytes {bytes} should be 2 (K and V) x B {} x H {HEADS} x columns x D {HEAD_DIM} x 4 bytes",
        cache.len()
    );
    bytes / per_column
}

#[test]
fn task_1_memory_follows_the_longest_row() {
    let mut tracked = Tracked::new(Dtype::Float32);
    assert_eq!(tracked.cache.nbytes(), 0, "an empty batch stores nothing");
    tracked.apply(Add(5));
    let first = columns(&tracked.cache, "after adding 5 tokens");
    assert!(first >= 5, "5 tokens need at least 5 columns, got {first}");
    tracked.apply(Add(300));
    let both = columns(&tracked.cache, "after adding 300 tokens to a row of 5");
    assert!(
        both >= 300,
        "300 tokens need at least 300 columns, got {both}"
    );
    // Removing the 300-token row leaves 295 columns of padding in front of the 5-token row,
    // which must go: memory follows the longest sequence still running.
    tracked.apply(Remove(1));
    let after = columns(&tracked.cache, "after removing the 300-token row");
    assert!(
        after <= both - 295,
        "after removing the 300-token row, the 295 columns of padding before the 5-token row should be dropped: {both} columns before, {after} after"
    );
    tracked.apply(Remove(0));
    assert_eq!(
        tracked.cache.nbytes(),
        0,
        "removing the last row should free everything"
    );
}

#[rstest]
#[case::two_rows_at_once(&[2, HEADS, 3, HEAD_DIM])]
#[case::other_kv_heads(&[1, 4, 3, HEAD_DIM])]
#[case::other_head_dim(&[1, HEADS, 3, 16])]
#[case::three_dimensions(&[HEADS, 3, HEAD_DIM])]
fn task_1_a_sequence_that_does_not_fit_is_an_error(#[case] shape: &[i32]) {
    let keys = random_array(shape, Dtype::Float32, 1);
    let mut tracked = Tracked::new(Dtype::Float32);
    if shape[0] != 1 || shape.len() != 4 {
        assert!(
            tracked.cache.add(&keys, &keys).is_err(),
            "keys of shape {shape:?} cannot join an empty batch: a row joins as [1, H_kv, n, D]"
        );
        tracked.check_lengths();
    }
    tracked.apply(Add(4));
    assert!(
        tracked.cache.add(&keys, &keys).is_err(),
        "keys of shape {shape:?} cannot join a batch of [1, {HEADS}, 4, {HEAD_DIM}]: add must return an Err"
    );
    tracked.check_lengths();
}

#[test]
fn task_1_removing_a_row_that_is_not_there_is_an_error() {
    let mut tracked = Tracked::new(Dtype::Float32);
    assert!(
        tracked.cache.remove(0).is_err(),
        "an empty batch has no row 0"
    );
    tracked.apply(Add(3));
    tracked.apply(Add(5));
    assert!(
        tracked.cache.remove(2).is_err(),
        "a batch of 2 rows has no row 2"
    );
    tracked.check_lengths();
}

// ---------------------------------------------------------------------------------------------
// Task 2: the LayerCache of the batch: update_and_fetch and mask

#[rstest]
#[case::a_shorter_row_joins(&[Add(5), Add(2), Update(1), Update(3)])]
#[case::longer_rows_join_later(&[Add(2), Update(1), Add(6), Update(1), Add(1), Update(2)])]
#[case::removals_trim_the_padding(&[Add(3), Add(9), Add(4), Update(1), Remove(1), Update(1), Remove(0), Update(2)])]
#[case::across_a_step(&[Add(250), Add(3), Update(4), Update(3), Add(260), Update(1), Remove(0), Remove(1), Update(1)])]
#[case::emptied_then_refilled(&[Add(3), Update(1), Remove(0), Add(2), Update(1)])]
fn task_2_update_and_fetch_returns_every_row_right_aligned(
    #[case] ops: &[Op],
    #[values(Dtype::Float32, Dtype::Float16)] dtype: Dtype,
) {
    let mut tracked = Tracked::new(dtype);
    for &op in ops {
        let fetched = tracked.apply(op);
        tracked.check_lengths();
        let Some((keys, values)) = fetched else {
            continue;
        };
        let what = |name: &str| {
            format!(
                "{name} returned after {:?} ({dtype:?}; row lengths {:?}, each row right-aligned after zeros)",
                tracked.done,
                tracked.lengths()
            )
        };
        assert_eq!(keys.dtype(), dtype, "{}: dtype", what("keys"));
        assert_allclose(&keys, &tracked.expected(false), EXACT, &what("keys"));
        assert_allclose(&values, &tracked.expected(true), EXACT, &what("values"));
    }
}

/// A mask as text: one string per batch row, with one word per query (separated by spaces) and
/// one character per key: `0` where the query may look, `x` where it may not (`-inf`), `?` for
/// anything else.
fn render_mask(mask: &Array) -> Vec<String> {
    let &[batch, _, queries, keys] = mask.shape() else {
        panic!("the mask should be [B, 1, L, S], got {:?}", mask.shape());
    };
    let values = expect_ok(mask.as_dtype(Dtype::Float32), "as_dtype");
    values.eval().expect("the mask evaluates");
    let values = values.as_slice::<f32>();
    let word = |row: usize, query: usize| -> String {
        let start = (row * queries as usize + query) * keys as usize;
        values[start..start + keys as usize]
            .iter()
            .map(|&value| {
                if value == 0.0 {
                    '0'
                } else if value == f32::NEG_INFINITY {
                    'x'
                } else {
                    '?'
                }
            })
            .collect()
    };
    (0..batch as usize)
        .map(|row| {
            (0..queries as usize)
                .map(|query| word(row, query))
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect()
}

#[rstest]
#[case::two_rows_one_query(&[Add(3), Add(1)], 1, &["0000", "xx00"])]
#[case::two_rows_two_queries(&[Add(3), Add(1)], 2, &["0000x 00000", "xx00x xx000"])]
#[case::a_longer_row_joined(&[Add(2), Add(4)], 3, &["xx000xx xx0000x xx00000", "00000xx 000000x 0000000"])]
#[case::after_a_removal(&[Add(5), Add(2), Add(3), Remove(0)], 1, &["x000", "0000"])]
#[case::one_row_is_causal(&[Add(2)], 3, &["000xx 0000x 00000"])]
fn task_2_the_mask_hides_padding_and_the_future(
    #[case] ops: &[Op],
    #[case] queries: i32,
    #[case] expected: &[&str],
) {
    let mut tracked = Tracked::new(Dtype::Float32);
    for &op in ops {
        tracked.apply(op);
    }
    tracked.apply(Update(queries));
    let mask = ok(tracked.cache.mask(queries), "BatchKvCache::mask")
        .expect("a batch needs a mask (padding must be hidden): mask should return Some");
    let keys = expected[0].split(' ').next().map_or(0, str::len) as i32;
    assert_eq!(
        mask.shape(),
        &[expected.len() as i32, 1, queries, keys],
        "the mask after {:?} should be [B, 1, L, S]",
        tracked.done
    );
    assert_eq!(
        render_mask(&mask),
        expected,
        "the mask after {:?} (row lengths {:?}): one string per row, one word per query, 0 = visible, x = -inf",
        tracked.done,
        tracked.lengths()
    );
}

#[test]
fn task_2_bad_updates_are_an_error() {
    let mut tracked = Tracked::new(Dtype::Float32);
    let (keys, values) = tracked.random_kv([1, HEADS, 1, HEAD_DIM]);
    assert!(
        tracked.cache.update_and_fetch(&keys, &values).is_err(),
        "an empty batch has no rows to update: update_and_fetch must return an Err"
    );
    tracked.apply(Add(3));
    tracked.apply(Add(2));
    let (keys, values) = tracked.random_kv([3, HEADS, 1, HEAD_DIM]);
    assert!(
        tracked.cache.update_and_fetch(&keys, &values).is_err(),
        "keys for 3 rows cannot update a batch of 2: update_and_fetch must return an Err"
    );
    tracked.check_lengths();
    let flat = random_array(&[2, HEADS, HEAD_DIM], Dtype::Float32, 7);
    assert!(
        tracked.cache.update_and_fetch(&flat, &flat).is_err(),
        "keys of shape [2, H, D] are not [B, H_kv, L, D]: update_and_fetch must return an Err"
    );
    tracked.check_lengths();
}

/// One empty batched cache per layer of `model`.
fn empty_batch(model: &Model) -> Vec<BatchKvCache> {
    let layers = model.config().num_hidden_layers as usize;
    (0..layers).map(|_| BatchKvCache::new()).collect()
}

/// A prompt run alone through chapter 8's model, in a fresh cache per layer.
fn prefilled(model: &Model, tokens: &[u32]) -> Vec<KvCache> {
    let mut cache = model.new_cache();
    let input = Array::from_slice(tokens, &[1, tokens.len() as i32]); // [1, L]
    expect_ok(
        model.forward(&input, &mut cache),
        "Model::forward (prefill)",
    );
    cache
}

/// Adds a prefilled sequence as the last row of every layer's batch.
fn join(batch: &mut [BatchKvCache], cache: &[KvCache]) {
    for (layer, single) in batch.iter_mut().zip(cache) {
        let (keys, values) = single
            .contents()
            .expect("a prefilled cache holds something");
        expect_ok(layer.add(&keys, &values), "BatchKvCache::add");
    }
}

/// Runs `tokens` (one `Vec` of `L` tokens per row) as `[B, L]` through `model` with the batch.
fn run_batch(model: &Model, batch: &mut [BatchKvCache], tokens: &[&[u32]]) -> Array {
    let flat: Vec<u32> = tokens.iter().flat_map(|row| row.iter().copied()).collect();
    let input = Array::from_slice(&flat, &[tokens.len() as i32, tokens[0].len() as i32]); // [B, L]
    expect_ok(
        model.forward(&input, batch),
        "Model::forward with the batched cache",
    )
}

/// A tiny model with its weights in `dtype`, on `kernels`.
fn tiny_in(model_name: &str, dtype: Dtype, kernels: Kernels) -> Model {
    let dir = fixture_path(model_name);
    let config = ok(
        ModelConfig::from_file(&dir.join("config.json")),
        "ModelConfig::from_file",
    );
    let weights = load_fixture(&format!("{model_name}/model.safetensors"))
        .into_iter()
        .map(|(name, weight)| (name, ok(weight.as_dtype(dtype), "as_dtype")))
        .collect();
    ok(
        Model::from_weights(config, weights, &DenseLoader),
        "Model::from_weights",
    )
    .with_kernels(kernels)
}

/// Two sequences at different positions in one batch: seq1 (7 tokens) and seq2 (16 tokens),
/// prefilled apart, then decoded together; then seq1 leaves, rejoins shorter, and both run two
/// tokens at once. Every row's logits against transformers' at the same positions, with your
/// layers and with MLX's fused kernels (which take the cache's mask as an array).
#[rstest]
fn task_2_a_batch_at_different_positions_matches_transformers(
    #[values("llama-tiny", "qwen2-tiny", "qwen3-tiny")] model_name: &str,
    #[values(Kernels::Course, Kernels::Fused)] kernels: Kernels,
) {
    let model = tiny_in(model_name, Dtype::Float32, kernels);
    let reference = load_fixture(&format!("{model_name}/reference.safetensors"));
    let (seq1, seq2) = (
        ids(&reference["seq1.tokens"]),
        ids(&reference["seq2.tokens"]),
    );
    let (logits1, logits2) = (&reference["seq1.logits"], &reference["seq2.logits"]);
    let mut batch = empty_batch(&model);
    let check = |got: Array, expected: Array, what: String| {
        assert_allclose(
            &got,
            &expected,
            TINY_LOGITS,
            &format!("{model_name} ({kernels:?} kernels): {what}"),
        );
    };

    // Row 0: seq1 after 3 tokens; row 1: seq2 after 10, a longer row joining a shorter one.
    join(&mut batch, &prefilled(&model, &seq1[..3]));
    join(&mut batch, &prefilled(&model, &seq2[..10]));
    for step in 0..3 {
        let (at1, at2) = (3 + step, 10 + step);
        let logits = run_batch(
            &model,
            &mut batch,
            &[&seq1[at1..at1 + 1], &seq2[at2..at2 + 1]],
        );
        let what = |row: usize, seq: &str, at: usize| {
            format!("logits of batch row {row} ({seq} token {at}) after rows of 3 and 10 tokens and {step} decode steps")
        };
        check(
            logits.index((0, 0)),
            logits1.index(at1 as i32),
            what(0, "seq1", at1),
        );
        check(
            logits.index((1, 0)),
            logits2.index(at2 as i32),
            what(1, "seq2", at2),
        );
    }

    // seq1 leaves and rejoins after 2 tokens: row 0 is seq2 (13 tokens), row 1 seq1 (2 tokens).
    for layer in &mut batch {
        expect_ok(layer.remove(0), "BatchKvCache::remove");
    }
    join(&mut batch, &prefilled(&model, &seq1[..2]));
    // Two tokens per row at once: the mask must be causal within them as well as hide padding.
    let logits = run_batch(&model, &mut batch, &[&seq2[13..15], &seq1[2..4]]);
    for query in 0..2 {
        let what = |row: usize, seq: &str, at: usize| {
            format!("logits of batch row {row} ({seq} token {at}), two tokens per row after seq1 rejoined")
        };
        check(
            logits.index((0, query)),
            logits2.index(13 + query),
            what(0, "seq2", 13 + query as usize),
        );
        check(
            logits.index((1, query)),
            logits1.index(2 + query),
            what(1, "seq1", 2 + query as usize),
        );
    }
    let logits = run_batch(&model, &mut batch, &[&seq2[15..16], &seq1[4..5]]);
    check(
        logits.index((0, 0)),
        logits2.index(15),
        "logits of batch row 0 (seq2 token 15), the last step".into(),
    );
    check(
        logits.index((1, 0)),
        logits1.index(4),
        "logits of batch row 1 (seq1 token 4), the last step".into(),
    );
}

/// The logits of `tokens`' last position, run alone through a fresh cache `[V]`.
fn alone_logits(model: &Model, tokens: &[u32]) -> Array {
    let mut cache = model.new_cache();
    let input = Array::from_slice(tokens, &[1, tokens.len() as i32]); // [1, L]
    expect_ok(model.forward(&input, &mut cache), "Model::forward").index((0, -1))
}

/// A bfloat16 model (what GPUs run): seq1 after 3 tokens and seq2 after 10 decode together, and
/// each row's logits are what the row gets alone, where no mask is needed. Transformers' float32
/// references are too far from bfloat16 (up to 0.5 on these random weights) to test against;
/// alone and batched differ only in the order of their roundings. Before MLX's fused attention
/// was given the mask in the queries' dtype, the fused kernels failed here.
#[rstest]
fn task_2_a_bfloat16_batch_gives_each_row_what_it_gets_alone(
    #[values("llama-tiny", "qwen2-tiny", "qwen3-tiny")] model_name: &str,
    #[values(Kernels::Course, Kernels::Fused)] kernels: Kernels,
) {
    let model = tiny_in(model_name, Dtype::Bfloat16, kernels);
    let reference = load_fixture(&format!("{model_name}/reference.safetensors"));
    let (seq1, seq2) = (
        ids(&reference["seq1.tokens"]),
        ids(&reference["seq2.tokens"]),
    );
    let mut batch = empty_batch(&model);
    join(&mut batch, &prefilled(&model, &seq1[..3]));
    join(&mut batch, &prefilled(&model, &seq2[..10]));
    for step in 0..3 {
        let (at1, at2) = (3 + step, 10 + step);
        let logits = run_batch(
            &model,
            &mut batch,
            &[&seq1[at1..at1 + 1], &seq2[at2..at2 + 1]],
        ); // [2, 1, V]
        for (row, seq, at) in [(0, &seq1, at1), (1, &seq2, at2)] {
            assert_allclose(
                &logits.index((row, 0)),
                &alone_logits(&model, &seq[..=at]),
                Tolerance::BF16,
                &format!("{model_name} ({kernels:?} kernels, bfloat16): batch row {row} after {step} decode steps vs the same {} tokens alone", at + 1),
            );
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The scheduler, driven step by step (tasks 3 to 5)

fn request(id: u64, prompt: &[u32], max_new_tokens: usize) -> Request {
    Request {
        id,
        prompt: prompt.to_vec(),
        max_new_tokens,
        sampling: SamplingParams::default(),
        stop_token_ids: Vec::new(),
    }
}

fn config(max_running: usize, token_budget: usize, prefill_chunk: usize) -> SchedulerConfig {
    SchedulerConfig {
        max_running,
        token_budget,
        prefill_chunk,
    }
}

/// What one request received.
#[derive(Debug, Default)]
struct Outcome {
    tokens: Vec<u32>,
    /// The step (counting from 1) that produced each token.
    token_steps: Vec<usize>,
    /// Why and at which step it finished.
    finished: Option<(FinishReason, usize)>,
}

/// A scheduler with a record of every event, step by step.
struct Driver<'m> {
    scheduler: Scheduler<'m>,
    outcomes: BTreeMap<u64, Outcome>,
    /// Steps run so far.
    steps: usize,
}

/// Far more steps than any test needs: a scheduler that takes more never finishes.
const MAX_STEPS: usize = 400;

impl<'m> Driver<'m> {
    fn new(model: &'m Model, config: SchedulerConfig) -> Self {
        Driver {
            scheduler: ok(Scheduler::new(model, config), "Scheduler::new"),
            outcomes: BTreeMap::new(),
            steps: 0,
        }
    }

    fn add(&mut self, request: Request) {
        self.outcomes.entry(request.id).or_default();
        ok(self.scheduler.add(request), "Scheduler::add");
    }

    /// One step; checks that no request hears of anything after it finished.
    fn step(&mut self) -> Vec<Event> {
        self.steps += 1;
        let step = self.steps;
        let events = ok(self.scheduler.step(), &format!("Scheduler::step {step}"));
        for event in &events {
            let id = match event {
                Event::Token { id, .. } | Event::Finished { id, .. } => *id,
            };
            let outcome = self.outcomes.get_mut(&id).unwrap_or_else(|| {
                panic!("step {step}: an event for request {id}, which was never added: {event:?}")
            });
            if let Some((reason, at)) = outcome.finished {
                panic!("step {step}: request {id} finished at step {at} ({reason:?}), yet got {event:?}");
            }
            match *event {
                Event::Token { token, .. } => {
                    outcome.tokens.push(token);
                    outcome.token_steps.push(step);
                }
                Event::Finished { reason, .. } => outcome.finished = Some((reason, step)),
            }
        }
        events
    }

    /// Adds each request right before the step it names (1 = before the first step), and steps
    /// until every request is done.
    fn run(&mut self, mut arrivals: Vec<(usize, Request)>) {
        arrivals.sort_by_key(|(step, _)| *step);
        let mut arrivals = arrivals.into_iter().peekable();
        while arrivals.peek().is_some() || !self.scheduler.is_idle() {
            let next_step = self.steps + 1;
            while let Some((_, request)) = arrivals.next_if(|(step, _)| *step <= next_step) {
                self.add(request);
            }
            assert!(
                self.steps < MAX_STEPS,
                "the scheduler did not finish in {MAX_STEPS} steps: {} waiting, {} running",
                self.scheduler.waiting(),
                self.scheduler.running()
            );
            self.step();
        }
    }

    fn outcome(&self, id: u64) -> &Outcome {
        &self.outcomes[&id]
    }

    /// Request `id` received exactly `expected` and finished for `reason`.
    fn check(&self, id: u64, expected: &[u32], reason: FinishReason, what: &str) {
        let outcome = self.outcome(id);
        if let Some(at) = outcome
            .tokens
            .iter()
            .zip(expected)
            .position(|(got, want)| got != want)
        {
            panic!(
                "{what}: request {id}'s token {at} differs: got {}, expected {}\n  got      {:?}\n  expected {:?}",
                outcome.tokens[at], expected[at], outcome.tokens, expected
            );
        }
        assert_eq!(
            outcome.tokens.len(),
            expected.len(),
            "{what}: request {id} got {} tokens, expected {}\n  got      {:?}\n  expected {:?}",
            outcome.tokens.len(),
            expected.len(),
            outcome.tokens,
            expected
        );
        assert_eq!(
            outcome.finished.map(|(reason, _)| reason),
            Some(reason),
            "{what}: how request {id} finished"
        );
    }

    /// After the last request: nothing waits or runs, and every cache is freed.
    fn check_idle(&self, what: &str) {
        assert!(
            self.scheduler.is_idle(),
            "{what}: the scheduler should be idle"
        );
        assert_eq!(
            self.scheduler.cache_bytes(),
            0,
            "{what}: once every request has finished, no cache should remain"
        );
    }
}

/// A tiny model and its reference tensors.
fn tiny(model_name: &str) -> (Model, HashMap<String, Array>) {
    (
        load_model(&fixture_path(model_name)),
        load_fixture(&format!("{model_name}/reference.safetensors")),
    )
}

fn seq(reference: &HashMap<String, Array>, index: usize) -> Vec<u32> {
    ids(&reference[&format!("seq{index}.tokens")])
}

/// transformers' 16 greedy tokens after `seq{index}`.
fn continuation(reference: &HashMap<String, Array>, index: usize) -> Vec<u32> {
    ids(&reference[&format!("seq{index}.greedy_continuation")])
}

/// Greedy tokens for `prompt`, generated alone by chapter 8 (`generate` on a `CachedModel`),
/// which stops on the model's EOS ids without emitting them, as a request with them as its stop
/// tokens does.
fn alone(model: &Model, tokenizer: &Tokenizer, prompt: &[u32], max_new_tokens: usize) -> Vec<u32> {
    let options = GenerationOptions {
        max_new_tokens,
        stop_strings: Vec::new(),
        ignore_eos: false,
    };
    let generation = ok(
        generate(
            &mut CachedModel::new(model),
            tokenizer,
            prompt,
            &options,
            &mut greedy,
            &mut |_| {},
        ),
        "chapter 8's generate",
    );
    generation.tokens
}

// ---------------------------------------------------------------------------------------------
// Task 3: prefill and admission

/// seq0, seq1 and seq2 (1, 7 and 16 tokens) at once, one token each: the first token comes from
/// the prompt's last logits, however the prompt was cut into chunks.
#[rstest]
#[case::whole_prompts(config(16, 512, 256))]
#[case::chunks_of_4(config(16, 512, 4))]
#[case::chunks_of_5_in_a_budget_of_6(config(16, 6, 5))]
#[case::one_at_a_time(config(1, 512, 256))]
fn task_3_first_tokens_match_transformers(
    #[values("llama-tiny", "qwen2-tiny", "qwen3-tiny")] model_name: &str,
    #[case] config: SchedulerConfig,
) {
    let (model, reference) = tiny(model_name);
    let mut driver = Driver::new(&model, config);
    let arrivals = (0..3)
        .map(|index| (1, request(index as u64, &seq(&reference, index), 1)))
        .collect();
    driver.run(arrivals);
    for index in 0..3 {
        let expected = &continuation(&reference, index)[..1];
        let what = format!("{model_name}, seq{index} alone asking for 1 token, {config:?}");
        driver.check(index as u64, expected, FinishReason::Length, &what);
    }
    driver.check_idle(model_name);
}

/// When each request gets its first token: a prompt runs at most `prefill_chunk` tokens per
/// step, and all prompts together at most `token_budget`, oldest first.
#[rstest]
#[case::a_whole_prompt(&[2], 512, 256, &[1])]
#[case::chunks_of_4(&[2], 512, 4, &[4])]
#[case::chunks_of_5_the_last_one_short(&[2], 512, 5, &[4])]
#[case::a_budget_below_the_chunk(&[2], 3, 8, &[6])]
#[case::a_budget_of_one(&[1], 1, 256, &[7])]
#[case::two_prompts_share_a_step(&[1, 2], 10, 8, &[1, 3])]
#[case::the_oldest_first(&[2, 1], 10, 8, &[2, 3])]
fn task_3_prefill_stays_within_the_chunk_and_the_budget(
    #[case] sequences: &[usize],
    #[case] token_budget: usize,
    #[case] prefill_chunk: usize,
    #[case] first_token_steps: &[usize],
) {
    let (model, reference) = tiny("llama-tiny");
    let config = config(16, token_budget, prefill_chunk);
    let mut driver = Driver::new(&model, config);
    let arrivals = sequences
        .iter()
        .enumerate()
        .map(|(id, &index)| (1, request(id as u64, &seq(&reference, index), 1)))
        .collect();
    driver.run(arrivals);
    for (id, &index) in sequences.iter().enumerate() {
        let what = format!(
            "prompts of {:?} tokens, budget {token_budget}, chunks of {prefill_chunk}",
            sequences
                .iter()
                .map(|&index| seq(&reference, index).len())
                .collect::<Vec<_>>()
        );
        driver.check(
            id as u64,
            &continuation(&reference, index)[..1],
            FinishReason::Length,
            &what,
        );
        assert_eq!(
            driver.outcome(id as u64).token_steps,
            [first_token_steps[id]],
            "{what}: the step at which request {id} (seq{index}, {} tokens) gets its first token",
            seq(&reference, index).len()
        );
    }
    driver.check_idle("after the last prompt");
}

/// Three 16-token prompts, each taking two steps of prefill (chunks of 8), one token each:
/// requests start in the order they came, and no more than `max_running` at once.
#[rstest]
#[case::one_at_a_time(1, &[2, 4, 6], &[(2, 1), (2, 0), (1, 1), (1, 0), (0, 1), (0, 0)])]
#[case::two_at_a_time(2, &[2, 2, 4], &[(1, 2), (1, 0), (0, 1), (0, 0)])]
#[case::all_at_once(3, &[2, 2, 2], &[(0, 3), (0, 0)])]
fn task_3_requests_start_first_come_first_served(
    #[case] max_running: usize,
    #[case] first_token_steps: &[usize],
    #[case] waiting_and_running: &[(usize, usize)],
) {
    let (model, reference) = tiny("llama-tiny");
    let mut driver = Driver::new(&model, config(max_running, 64, 8));
    let prompt = seq(&reference, 2);
    for id in 0..3 {
        driver.add(request(id, &prompt, 1));
    }
    let counts = |driver: &Driver| (driver.scheduler.waiting(), driver.scheduler.running());
    assert_eq!(
        counts(&driver),
        (3, 0),
        "(waiting, running) before the first step"
    );
    for (step, &expected) in waiting_and_running.iter().enumerate() {
        driver.step();
        assert_eq!(
            counts(&driver),
            expected,
            "(waiting, running) after step {} with max_running {max_running}",
            step + 1
        );
    }
    for (id, &at) in first_token_steps.iter().enumerate() {
        driver.check(
            id as u64,
            &continuation(&reference, 2)[..1],
            FinishReason::Length,
            &format!("max_running {max_running}"),
        );
        assert_eq!(
            driver.outcome(id as u64).token_steps,
            [at],
            "max_running {max_running}: the step at which request {id} (added {id}th) gets its token"
        );
    }
    driver.check_idle(&format!("max_running {max_running}"));
}

#[test]
fn task_3_a_request_for_no_tokens_finishes_at_once() {
    let (model, reference) = tiny("llama-tiny");
    let mut driver = Driver::new(&model, SchedulerConfig::default());
    driver.add(request(0, &seq(&reference, 1), 0));
    driver.add(request(1, &seq(&reference, 2), 1));
    let events = driver.step();
    assert!(
        events.contains(&Event::Finished {
            id: 0,
            reason: FinishReason::Length
        }),
        "a request for 0 tokens should finish (Length) in the first step, with no token: {events:?}"
    );
    driver.run(Vec::new());
    driver.check(0, &[], FinishReason::Length, "max_new_tokens 0");
    driver.check(
        1,
        &continuation(&reference, 2)[..1],
        FinishReason::Length,
        "beside a request for 0 tokens",
    );
    driver.check_idle("max_new_tokens 0");
}

#[test]
fn task_3_a_stop_token_as_the_first_token_is_not_emitted() {
    let (model, reference) = tiny("llama-tiny");
    let mut driver = Driver::new(&model, SchedulerConfig::default());
    let first = continuation(&reference, 1)[0];
    let mut stopping = request(0, &seq(&reference, 1), 5);
    stopping.stop_token_ids = vec![first];
    driver.add(stopping);
    driver.add(request(1, &seq(&reference, 2), 1));
    driver.run(Vec::new());
    driver.check(
        0,
        &[],
        FinishReason::Stop,
        &format!("seq1 with stop token {first}, its first greedy token"),
    );
    assert_eq!(
        driver.outcome(0).finished.map(|(_, step)| step),
        Some(1),
        "the request should finish in the step that chose its stop token"
    );
    driver.check(
        1,
        &continuation(&reference, 2)[..1],
        FinishReason::Length,
        "beside a request that stopped",
    );
    driver.check_idle("after a stop token");
}

#[test]
fn task_3_an_empty_prompt_is_rejected() {
    let (model, reference) = tiny("llama-tiny");
    let mut driver = Driver::new(&model, SchedulerConfig::default());
    assert!(
        driver.scheduler.add(request(0, &[], 4)).is_err(),
        "a request with an empty prompt must be an Err: there are no logits to choose from"
    );
    assert_eq!(
        driver.scheduler.waiting(),
        0,
        "a rejected request must not wait"
    );
    driver.run(vec![(1, request(1, &seq(&reference, 1), 1))]);
    driver.check(
        1,
        &continuation(&reference, 1)[..1],
        FinishReason::Length,
        "after a rejected request",
    );
}

/// A limit of 0 would never run anything; the smallest limits, 1, must still work.
#[rstest]
#[case::max_running(|limit| config(limit, 512, 256))]
#[case::token_budget(|limit| config(16, limit, 256))]
#[case::prefill_chunk(|limit| config(16, 512, limit))]
fn task_3_zero_limits_are_an_error_and_one_works(#[case] with_limit: fn(usize) -> SchedulerConfig) {
    let (model, reference) = tiny("llama-tiny");
    let zero = with_limit(0);
    assert!(
        Scheduler::new(&model, zero).is_err(),
        "Scheduler::new({zero:?}) must be an Err"
    );
    let one = with_limit(1);
    let mut driver = Driver::new(&model, one);
    driver.run(vec![
        (1, request(0, &seq(&reference, 1), 1)),
        (1, request(1, &seq(&reference, 2), 1)),
    ]);
    for (id, index) in [(0, 1), (1, 2)] {
        driver.check(
            id,
            &continuation(&reference, index)[..1],
            FinishReason::Length,
            &format!("{one:?}"),
        );
    }
    driver.check_idle(&format!("{one:?}"));
}

// ---------------------------------------------------------------------------------------------
// Task 4: decoding the batch

/// A request of [`task_4_staggered_requests_match_generating_alone`].
struct Planned {
    /// Added right before this step.
    arrives: usize,
    prompt: Vec<u32>,
    max_new_tokens: usize,
    stop_token_ids: Vec<u32>,
    expected: Vec<u32>,
    reason: FinishReason,
    what: String,
}

/// Requests arrive at different steps with prompts of 1 to 16 tokens and ask for 3 to 16 tokens;
/// two have the same prompt. Each must get exactly the tokens it gets alone: transformers'
/// greedy continuation for seq0-2 (which never chose EOS), chapter 8's generation alone for the
/// others, which stop on EOS (llama-tiny's `seq1[..2]` chooses it after 4 tokens).
#[rstest]
#[case::roomy(config(16, 512, 256))]
#[case::tight(config(3, 6, 4))]
fn task_4_staggered_requests_match_generating_alone(
    #[values("llama-tiny", "qwen2-tiny", "qwen3-tiny")] model_name: &str,
    #[case] config: SchedulerConfig,
) {
    let (model, reference) = tiny(model_name);
    let tokenizer = ok(
        Tokenizer::load(&fixture_path(model_name)),
        "Tokenizer::load",
    );
    let from_transformers = |arrives: usize, index: usize, max_new_tokens: usize| Planned {
        arrives,
        prompt: seq(&reference, index),
        max_new_tokens,
        stop_token_ids: Vec::new(),
        expected: continuation(&reference, index)[..max_new_tokens].to_vec(),
        reason: FinishReason::Length,
        what: format!("seq{index} (transformers' greedy continuation)"),
    };
    let from_alone = |arrives: usize, prompt: &[u32], name: &str, max_new_tokens: usize| {
        let expected = alone(&model, &tokenizer, prompt, max_new_tokens);
        Planned {
            arrives,
            prompt: prompt.to_vec(),
            max_new_tokens,
            stop_token_ids: model.config().eos_token_ids.clone(),
            reason: if expected.len() < max_new_tokens {
                FinishReason::Stop
            } else {
                FinishReason::Length
            },
            expected,
            what: format!("{name} (chapter 8's generate, alone, stopping on EOS)"),
        }
    };
    let (seq1, seq2) = (seq(&reference, 1), seq(&reference, 2));
    let plan = [
        from_transformers(1, 2, 16),
        from_transformers(1, 0, 6),
        from_transformers(3, 1, 12),
        from_alone(5, &seq2[4..13], "seq2[4..13]", 10),
        from_alone(6, &seq2[9..], "seq2[9..]", 3),
        from_transformers(6, 1, 16),
        from_alone(9, &seq1[..2], "seq1[..2]", 8),
    ];
    let mut driver = Driver::new(&model, config);
    driver.run(
        plan.iter()
            .enumerate()
            .map(|(id, planned)| {
                let mut request = request(id as u64, &planned.prompt, planned.max_new_tokens);
                request.stop_token_ids = planned.stop_token_ids.clone();
                (planned.arrives, request)
            })
            .collect(),
    );
    for (id, planned) in plan.iter().enumerate() {
        let what = format!(
            "{model_name}, {config:?}: request {id}, {} tokens of {}, added before step {}",
            planned.max_new_tokens, planned.what, planned.arrives
        );
        driver.check(id as u64, &planned.expected, planned.reason, &what);
    }
    driver.check_idle(model_name);
}

/// SmolLM2's prompts, arriving at different steps, against transformers' greedy continuations.
/// Prompts 0 and 5 stop before the steps where transformers suppressed EOS (29 and 22).
#[test]
fn task_4_smollm2_staggered_requests_match_transformers() {
    let Some(dir) = fetched_model_dir(SMOLLM2) else {
        return;
    };
    let model = load_model(&dir);
    let reference = load_fixture("smollm2/reference.safetensors");
    // (prompt, added before step, max_new_tokens)
    let plan = [(3, 1, 32), (1, 1, 24), (0, 4, 20), (2, 6, 10), (5, 7, 16)];
    let config = config(4, 40, 16);
    let mut driver = Driver::new(&model, config);
    driver.run(
        plan.iter()
            .map(|&(prompt, arrives, max_new_tokens)| {
                let tokens = ids(&reference[&format!("prompt{prompt}.tokens")]);
                (arrives, request(prompt, &tokens, max_new_tokens))
            })
            .collect(),
    );
    for (prompt, arrives, max_new_tokens) in plan {
        let expected = ids(&reference[&format!("prompt{prompt}.greedy_continuation")]);
        let what = format!(
            "SmolLM2, {config:?}: prompt {prompt} added before step {arrives}, {max_new_tokens} tokens"
        );
        driver.check(
            prompt,
            &expected[..max_new_tokens],
            FinishReason::Length,
            &what,
        );
    }
    driver.check_idle("SmolLM2");
}

/// A request decodes one token per step while a long prompt prefills beside it, 4 tokens per
/// step (a budget of 5, one of which the decoding request takes).
#[test]
fn task_4_decoding_goes_on_while_a_long_prompt_prefills() {
    let (model, reference) = tiny("llama-tiny");
    let mut driver = Driver::new(&model, config(4, 5, 8));
    driver.run(vec![
        (1, request(0, &seq(&reference, 1), 12)),
        (3, request(1, &seq(&reference, 2), 4)),
    ]);
    let what = "budget 5, chunks of 8: seq1 (7 tokens) from step 1, seq2 (16 tokens) from step 3";
    driver.check(
        0,
        &continuation(&reference, 1)[..12],
        FinishReason::Length,
        what,
    );
    driver.check(
        1,
        &continuation(&reference, 2)[..4],
        FinishReason::Length,
        what,
    );
    // seq1: 5 prompt tokens in step 1, 2 and its first token in step 2, then one token per step.
    assert_eq!(
        driver.outcome(0).token_steps,
        (2..14).collect::<Vec<_>>(),
        "{what}: the steps of request 0's tokens (one per step, never paused by the prefill)"
    );
    // seq2: 4 prompt tokens per step in steps 3 to 6 (the decoding request takes 1 of the 5).
    assert_eq!(
        driver.outcome(1).token_steps,
        (6..10).collect::<Vec<_>>(),
        "{what}: the steps of request 1's tokens"
    );
    driver.check_idle(what);
}

/// A request that chooses one of its stop tokens leaves without emitting it; the others go on.
#[rstest]
fn task_4_requests_finish_on_a_stop_token_or_after_max_tokens(
    #[values("llama-tiny", "qwen2-tiny", "qwen3-tiny")] model_name: &str,
) {
    let (model, reference) = tiny(model_name);
    let expected = continuation(&reference, 2);
    // The first token from the third on that did not come before: the request stops there.
    let stop_at = (2..expected.len())
        .find(|&at| !expected[..at].contains(&expected[at]))
        .expect("a 16-token continuation has a new token after the second");
    let mut stopping = request(0, &seq(&reference, 2), 16);
    stopping.stop_token_ids = vec![expected[stop_at]];
    let mut driver = Driver::new(&model, SchedulerConfig::default());
    driver.run(vec![
        (1, request(1, &seq(&reference, 1), 16)),
        (1, stopping),
        (2, request(2, &seq(&reference, 0), 5)),
    ]);
    driver.check(
        0,
        &expected[..stop_at],
        FinishReason::Stop,
        &format!(
            "{model_name}: seq2 with stop token {} (its greedy token {stop_at})",
            expected[stop_at]
        ),
    );
    driver.check(
        1,
        &continuation(&reference, 1),
        FinishReason::Length,
        &format!("{model_name}: seq1, beside a request that stopped"),
    );
    driver.check(
        2,
        &continuation(&reference, 0)[..5],
        FinishReason::Length,
        &format!("{model_name}: seq0, 5 tokens"),
    );
    driver.check_idle(model_name);
}

// ---------------------------------------------------------------------------------------------
// Task 5: Scheduler::cancel

fn cancel(driver: &mut Driver, id: u64) -> bool {
    ok(driver.scheduler.cancel(id), "Scheduler::cancel")
}

#[test]
fn task_5_cancel_a_waiting_request() {
    let (model, reference) = tiny("llama-tiny");
    let mut driver = Driver::new(&model, config(1, 512, 256));
    driver.add(request(0, &seq(&reference, 1), 4));
    driver.add(request(1, &seq(&reference, 2), 4));
    driver.add(request(2, &seq(&reference, 0), 3));
    driver.step();
    assert_eq!(driver.scheduler.waiting(), 2, "waiting before the cancel");
    assert!(
        cancel(&mut driver, 1),
        "cancelling a waiting request should return true"
    );
    assert_eq!(
        driver.scheduler.waiting(),
        1,
        "waiting after cancelling one of the two"
    );
    driver.run(Vec::new());
    let outcome = driver.outcome(1);
    assert!(
        outcome.tokens.is_empty() && outcome.finished.is_none(),
        "a cancelled waiting request never runs and has no event: {outcome:?}"
    );
    driver.check(
        0,
        &continuation(&reference, 1)[..4],
        FinishReason::Length,
        "request 0",
    );
    driver.check(
        2,
        &continuation(&reference, 0)[..3],
        FinishReason::Length,
        "request 2, after the one before it was cancelled",
    );
    assert!(
        !cancel(&mut driver, 1),
        "cancelling a request a second time should return false"
    );
    driver.check_idle("after a cancel");
}

#[test]
fn task_5_cancel_a_prefilling_request_frees_its_cache() {
    let (model, reference) = tiny("llama-tiny");
    let mut driver = Driver::new(&model, config(4, 512, 4));
    driver.add(request(0, &seq(&reference, 1), 6));
    driver.add(request(1, &seq(&reference, 2), 6));
    driver.step();
    driver.step();
    // Request 0 (7 tokens) is decoding; request 1 (16 tokens) has 8 of its prompt in its cache.
    assert_eq!(driver.scheduler.running(), 2, "running after two steps");
    let before = driver.scheduler.cache_bytes();
    assert!(
        cancel(&mut driver, 1),
        "cancelling a prefilling request should return true"
    );
    let after = driver.scheduler.cache_bytes();
    assert!(
        after < before,
        "cancelling a prefilling request should free its cache: cache_bytes {before} before, {after} after"
    );
    assert_eq!(driver.scheduler.running(), 1, "running after the cancel");
    driver.run(Vec::new());
    let outcome = driver.outcome(1);
    assert!(
        outcome.tokens.is_empty() && outcome.finished.is_none(),
        "request 1 was cancelled before its first token: it gets no event: {outcome:?}"
    );
    driver.check(
        0,
        &continuation(&reference, 1)[..6],
        FinishReason::Length,
        "beside a cancelled prefill",
    );
    driver.check_idle("after a cancel");
}

/// Three requests decoding together (seq0, seq1 and seq2, rows 0-2); one is cancelled after 4
/// steps. Its row leaves, memory shrinks, and the others still get exactly their tokens.
#[rstest]
#[case::the_first_row(0)]
#[case::the_middle_row(1)]
#[case::the_longest_row(2)]
fn task_5_cancel_a_decoding_request_frees_its_row(
    #[values("llama-tiny", "qwen3-tiny")] model_name: &str,
    #[case] cancelled: u64,
) {
    let (model, reference) = tiny(model_name);
    let mut driver = Driver::new(&model, SchedulerConfig::default());
    for index in 0..3 {
        driver.add(request(index, &seq(&reference, index as usize), 12));
    }
    for _ in 0..4 {
        driver.step();
    }
    let before = driver.scheduler.cache_bytes();
    assert!(
        cancel(&mut driver, cancelled),
        "cancelling a decoding request should return true"
    );
    let after = driver.scheduler.cache_bytes();
    assert!(
        after < before,
        "{model_name}: cancelling request {cancelled} should free its row of the batched cache: cache_bytes {before} before, {after} after"
    );
    assert_eq!(driver.scheduler.running(), 2, "running after the cancel");
    assert!(
        !cancel(&mut driver, cancelled),
        "cancelling request {cancelled} again should return false"
    );
    assert!(
        !cancel(&mut driver, 99),
        "cancelling a request that was never added should return false"
    );
    driver.run(Vec::new());
    for index in 0..3u64 {
        let expected = &continuation(&reference, index as usize)[..12];
        if index == cancelled {
            let outcome = driver.outcome(index);
            assert_eq!(
                outcome.tokens,
                &expected[..outcome.tokens.len()],
                "{model_name}: the tokens request {index} got before it was cancelled"
            );
            assert!(
                outcome.tokens.len() == 4 && outcome.finished.is_none(),
                "{model_name}: request {index}, cancelled after 4 steps, should have its 4 tokens and no Finished event: {outcome:?}"
            );
        } else {
            driver.check(
                index,
                expected,
                FinishReason::Length,
                &format!("{model_name}: request {index}, after request {cancelled} was cancelled"),
            );
        }
    }
    driver.check_idle(model_name);
}
