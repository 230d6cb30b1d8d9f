//! Helpers for the chapter tests: compare arrays with a tolerance and say exactly where they
//! differ, make seeded random inputs, and load the reference tensors in `models/fixtures/`.

mod compare;
mod fixtures;
mod tiny_models;

pub use compare::{assert_allclose, Tolerance};
pub use fixtures::{fetched_model_dir, fixture_path, load_fixture};
pub use tiny_models::{load_tiny_model, TinyConfig, TinyModel, TINY_MODELS};

use mlx_rs::{random, Array, Dtype};

/// A standard-normal array of `shape`, the same for the same `seed`, cast to `dtype`.
pub fn random_array(shape: &[i32], dtype: Dtype, seed: u64) -> Array {
    let key = random::key(seed).expect("MLX makes a random key");
    random::normal::<f32>(shape, None, None, &key)
        .and_then(|values| values.as_dtype(dtype))
        .expect("MLX makes a random array")
}

/// Unwraps what a learner's function returned, turning an `Err` into a readable test failure.
pub fn expect_ok<T, E: std::fmt::Display>(result: Result<T, E>, what: &str) -> T {
    result.unwrap_or_else(|error| panic!("{what} returned an error: {error}"))
}

/// The token ids in an int32 reference array (the fixtures store ids as int32).
pub fn token_ids(array: &Array) -> Vec<u32> {
    array
        .as_slice::<i32>()
        .iter()
        .map(|&id| id as u32)
        .collect()
}

/// `log_softmax(logits)` in f64, the max subtracted first: an independent reference for the
/// log-probabilities the engine computes with MLX.
pub fn log_softmax(logits: &[f32]) -> Vec<f64> {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
    let sum: f64 = logits.iter().map(|&l| (l as f64 - max).exp()).sum();
    let log_sum = max + sum.ln();
    logits.iter().map(|&l| l as f64 - log_sum).collect()
}
