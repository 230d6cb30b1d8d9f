//! What the tasks' tests share: tolerances, random keys and values, and model loading.

use kv_cache::{KvCache, Model};
use mlx_rs::{ops, Array, Dtype};
use std::path::Path;
use test_support::{expect_ok, random_array, Tolerance};

pub const SMOLLM2: &str = "smollm2-135m-instruct";

/// Copies are exact: the cache must give back the very values it was given.
pub const EXACT: Tolerance = Tolerance {
    rtol: 0.0,
    atol: 0.0,
};

/// Tiny-model logits, as in chapter 5: three float32 layers summed in another order than
/// PyTorch's differ by up to ~6e-5 on logits of magnitude up to ~20.
pub const TINY_LOGITS: Tolerance = Tolerance {
    rtol: 1e-5,
    atol: 1e-4,
};

pub fn load_model(dir: &Path) -> Model {
    Model::load(dir).unwrap_or_else(|error| panic!("Model::load({}): {error}", dir.display()))
}

/// Seeded random keys and values `[B, H_kv, L, D]`, different from each other.
pub fn random_kv(shape: [i32; 4], dtype: Dtype, seed: u64) -> (Array, Array) {
    (
        random_array(&shape, dtype, 2 * seed),
        random_array(&shape, dtype, 2 * seed + 1),
    )
}

pub fn concatenate(parts: &[Array], axis: i32) -> Array {
    expect_ok(ops::concatenate(parts, axis), "ops::concatenate")
}

pub fn update(cache: &mut KvCache, keys: &Array, values: &Array) -> (Array, Array) {
    expect_ok(
        cache.update_and_fetch(keys, values),
        "KvCache::update_and_fetch",
    )
}
