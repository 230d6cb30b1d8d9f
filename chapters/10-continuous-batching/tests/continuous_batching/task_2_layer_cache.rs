//! Task 2: the LayerCache of the batch: update_and_fetch and mask

use crate::harness::{
    Op,
    Op::{Add, Remove, Update},
    Tracked, HEADS, HEAD_DIM,
};
use continuous_batching::{
    BatchKvCache, DenseLoader, Kernels, KvCache, LayerCache, Model, ModelConfig,
};
use mlx_rs::{ops::indexing::IndexOp, Array, Dtype};
use rstest::rstest;
use test_support::{
    assert_allclose, expect_ok as ok, expect_ok, fixture_path, load_fixture, random_array,
    token_ids as ids, Tolerance,
};

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
