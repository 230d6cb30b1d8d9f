//! `assert_allclose`: numpy-style closeness, |got - expected| <= atol + rtol * |expected|,
//! reporting the worst element by its index.

use mlx_rs::{Array, Dtype};

/// How far `got` may be from `expected`, element by element.
#[derive(Clone, Copy, Debug)]
pub struct Tolerance {
    pub rtol: f64,
    pub atol: f64,
}

impl Tolerance {
    /// f32: a few units in the last place after a short reduction.
    pub const F32: Tolerance = Tolerance {
        rtol: 1e-5,
        atol: 1e-6,
    };
    /// f16 keeps 10 mantissa bits: one rounding is already ~5e-4 relative.
    pub const F16: Tolerance = Tolerance {
        rtol: 2e-3,
        atol: 2e-3,
    };
    /// bf16 keeps 7 mantissa bits: one rounding is already ~4e-3 relative.
    pub const BF16: Tolerance = Tolerance {
        rtol: 2e-2,
        atol: 2e-2,
    };

    /// The tolerance that matches the precision of `dtype`.
    pub fn for_dtype(dtype: Dtype) -> Tolerance {
        match dtype {
            Dtype::Float16 => Tolerance::F16,
            Dtype::Bfloat16 => Tolerance::BF16,
            _ => Tolerance::F32,
        }
    }
}

fn to_f32_values(array: &Array, what: &str) -> Vec<f32> {
    // Transposed or sliced views (e.g. after `swap_axes`) must be copied into row-major order.
    let values = array
        .as_dtype(Dtype::Float32)
        .and_then(|values| values.contiguous())
        .unwrap_or_else(|error| panic!("{what}: cannot read values as f32: {error}"));
    values
        .eval()
        .unwrap_or_else(|error| panic!("{what}: cannot evaluate: {error}"));
    values.as_slice::<f32>().to_vec()
}

/// The multi-dimensional index of flat position `flat` in row-major `shape`.
fn unravel(mut flat: usize, shape: &[i32]) -> Vec<usize> {
    let mut index = vec![0; shape.len()];
    for (axis, &size) in shape.iter().enumerate().rev() {
        let size = size.max(1) as usize;
        index[axis] = flat % size;
        flat /= size;
    }
    index
}

/// Panics unless `got` has `expected`'s shape and every element is within `tolerance`; the
/// message names the worst element, its index and both values.
pub fn assert_allclose(got: &Array, expected: &Array, tolerance: Tolerance, what: &str) {
    assert_eq!(
        got.shape(),
        expected.shape(),
        "{what}: shape {:?} differs from the expected {:?}",
        got.shape(),
        expected.shape()
    );
    let got_values = to_f32_values(got, what);
    let expected_values = to_f32_values(expected, what);
    // numpy's allclose: the bound grows with |expected| on top of atol (approx's relative_eq
    // takes the larger of the two instead, which is not what the tolerances were chosen for).
    let outside = |g: f32, e: f32| {
        let (g, e) = (f64::from(g), f64::from(e));
        let bound = tolerance.atol + tolerance.rtol * e.abs();
        !(g == e || approx::abs_diff_eq!(g, e, epsilon = bound))
    };
    let failures = got_values
        .iter()
        .zip(&expected_values)
        .filter(|(&g, &e)| outside(g, e))
        .count();
    if failures == 0 {
        return;
    }
    let excess = |g: f32, e: f32| {
        let diff = (f64::from(g) - f64::from(e)).abs();
        if diff.is_nan() {
            f64::INFINITY
        } else {
            diff / (tolerance.atol + tolerance.rtol * f64::from(e).abs())
        }
    };
    let (worst, (&g, &e)) = got_values
        .iter()
        .zip(&expected_values)
        .enumerate()
        .max_by(|(_, (g1, e1)), (_, (g2, e2))| excess(**g1, **e1).total_cmp(&excess(**g2, **e2)))
        .expect("shapes are equal and an element failed");
    panic!(
        "{what} differs from the expected values at {:?}: got {g}, expected {e} (rtol {}, atol {}); {failures} of {} elements are outside the tolerance",
        unravel(worst, expected.shape()),
        tolerance.rtol,
        tolerance.atol,
        expected_values.len()
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_arrays_pass() {
        let a = Array::from_slice(&[1.0f32, 2.0, 3.0], &[3]);
        assert_allclose(&a, &a, Tolerance::F32, "same");
    }

    #[test]
    #[should_panic(expected = "at [1, 0]: got 5, expected 4")]
    fn the_worst_element_is_named() {
        let got = Array::from_slice(&[1.0f32, 2.0, 5.0, 4.0], &[2, 2]);
        let expected = Array::from_slice(&[1.0f32, 2.0, 4.0, 4.0], &[2, 2]);
        assert_allclose(&got, &expected, Tolerance::F32, "values");
    }

    #[test]
    #[should_panic(expected = "shape [3] differs from the expected [1, 3]")]
    fn shapes_must_match() {
        let got = Array::from_slice(&[1.0f32, 2.0, 3.0], &[3]);
        let expected = Array::from_slice(&[1.0f32, 2.0, 3.0], &[1, 3]);
        assert_allclose(&got, &expected, Tolerance::F32, "values");
    }

    #[test]
    fn transposed_views_compare_by_index() {
        let matrix = Array::from_slice(&[1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0], &[2, 3]);
        let transposed = Array::from_slice(&[1.0f32, 4.0, 2.0, 5.0, 3.0, 6.0], &[3, 2]);
        assert_allclose(&matrix.t(), &transposed, Tolerance::F32, "transpose");
    }

    #[test]
    fn the_bound_is_atol_plus_rtol_times_expected() {
        let tolerance = Tolerance {
            rtol: 1e-3,
            atol: 1e-3,
        };
        let expected = Array::from_slice(&[1.0f32], &[1]);
        // 1.5e-3 is beyond atol and beyond rtol * |expected|, within their sum.
        let inside = Array::from_slice(&[1.0015f32], &[1]);
        assert_allclose(&inside, &expected, tolerance, "inside");
        let outside = Array::from_slice(&[1.0025f32], &[1]);
        let result =
            std::panic::catch_unwind(|| assert_allclose(&outside, &expected, tolerance, "outside"));
        assert!(result.is_err(), "2.5e-3 away must be outside atol + rtol");
    }

    #[test]
    #[should_panic(expected = "got NaN")]
    fn nan_never_passes() {
        let got = Array::from_slice(&[f32::NAN], &[1]);
        let expected = Array::from_slice(&[1.0f32], &[1]);
        assert_allclose(&got, &expected, Tolerance::F32, "values");
    }
}
