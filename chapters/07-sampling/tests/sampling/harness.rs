//! What the tasks' tests share: logits worked out by hand and the checks of a filter's output.

use mlx_rs::{Array, Dtype};

pub const INF: f32 = f32::INFINITY;

pub fn vector(values: &[f32]) -> Array {
    Array::from_slice(values, &[values.len() as i32])
}

fn values_of(array: &Array, what: &str) -> Vec<f32> {
    let values = array
        .as_dtype(Dtype::Float32)
        .unwrap_or_else(|error| panic!("{what}: cannot read values as f32: {error}"));
    values
        .eval()
        .unwrap_or_else(|error| panic!("{what}: cannot evaluate: {error}"));
    values.as_slice::<f32>().to_vec()
}

/// Checks a filter's output: the tokens in `kept` keep their logits exactly, every other
/// token is `-inf`, and the shape and dtype are those of `input`.
pub fn assert_kept(got: &Array, input: &Array, kept: &[usize], what: &str) {
    assert_eq!(got.shape(), input.shape(), "{what}: wrong shape");
    assert_eq!(got.dtype(), input.dtype(), "{what}: must keep the dtype");
    let (got_values, input_values) = (values_of(got, what), values_of(input, what));
    let got_kept: Vec<usize> = (0..got_values.len())
        .filter(|&i| got_values[i] > -INF)
        .collect();
    assert_eq!(
        got_kept, kept,
        "{what}: kept tokens {got_kept:?} (the others -inf), expected {kept:?}; got logits {got_values:?}"
    );
    for &i in kept {
        assert_eq!(
            got_values[i], input_values[i],
            "{what}: a kept logit must not change, token {i}: got {}, expected {}",
            got_values[i], input_values[i]
        );
    }
    for (i, value) in got_values.iter().enumerate() {
        assert!(
            kept.contains(&i) || *value == -INF,
            "{what}: removed token {i} must be -inf, got {value}"
        );
    }
}

pub fn assert_error_names<T>(result: mlx_rs::error::Result<T>, name: &str, what: &str) {
    let error = match result {
        Ok(_) => panic!("{what} must be rejected"),
        Err(error) => error.to_string(),
    };
    assert!(
        error.contains(name),
        "{what}: the error should name `{name}`: {error}"
    );
}

pub const FIVE: &[f32] = &[1.0, 3.0, 2.0, 5.0, 4.0];

/// Probabilities that a float32 softmax reproduces exactly, so that a cumulative sum can equal
/// `top_p` exactly. Relative to the top token the weights are 1, 1/2, 1/4 and 1/16: their logits
/// (0, -ln 2, -2 ln 2, -4 ln 2) round to exact multiples of the float32 ln 2, whose exponentials
/// round to the exact powers of two; the weights sum to 2, so dividing by the sum is exact too.
/// Sorted: 1/2 (token 3), 1/4 (token 1), 1/8 (token 4), then four tied tokens of 1/32.
pub const DYADIC: [f64; 7] = [
    1.0 / 32.0,
    1.0 / 4.0,
    1.0 / 32.0,
    1.0 / 2.0,
    1.0 / 8.0,
    1.0 / 32.0,
    1.0 / 32.0,
];

/// Logits with softmax `probabilities`, the most probable at logit 0.
pub fn logits_of(probabilities: &[f64]) -> Vec<f32> {
    let top = probabilities.iter().copied().fold(0.0, f64::max);
    probabilities
        .iter()
        .map(|p| (p / top).ln() as f32)
        .collect()
}
