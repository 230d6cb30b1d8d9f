//! Smoke tests of the MLX bridge: each MLX operation the course relies on, checked against a
//! hand-computed value or a plain f64 implementation written here from the definitions.

use half::{bf16, f16};
use mlx_rs::{fast, ops, ops::indexing::IndexOp, random, Array, Dtype};
use rand::{rngs::StdRng, Rng, SeedableRng};
use rstest::rstest;
use std::collections::HashMap;

/// Seeded values in [-1, 1).
fn random_values(count: usize, seed: u64) -> Vec<f32> {
    let mut rng = StdRng::seed_from_u64(seed);
    (0..count).map(|_| rng.random_range(-1.0..1.0)).collect()
}

fn to_f32(array: &Array) -> Vec<f32> {
    let array = array.as_dtype(Dtype::Float32).expect("cast to f32");
    array.eval().expect("eval");
    array.as_slice::<f32>().to_vec()
}

/// Fails with the worst element, its flat index and both values.
fn assert_close(what: &str, got: &[f32], expected: &[f64], rtol: f64, atol: f64) {
    assert_eq!(
        got.len(),
        expected.len(),
        "{what}: got {} values, expected {}",
        got.len(),
        expected.len()
    );
    let worst = got
        .iter()
        .zip(expected)
        .enumerate()
        .map(|(index, (&g, &e))| {
            (
                index,
                g,
                e,
                (f64::from(g) - e).abs() - (atol + rtol * e.abs()),
            )
        })
        .max_by(|a, b| a.3.total_cmp(&b.3));
    if let Some((index, g, e, excess)) = worst {
        assert!(excess <= 0.0, "{what} differs at flat index {index}: got {g}, expected {e} (rtol {rtol}, atol {atol})");
    }
}

#[rstest]
#[case::f32(Dtype::Float32)]
#[case::f16(Dtype::Float16)]
#[case::bf16(Dtype::Bfloat16)]
#[case::i32(Dtype::Int32)]
#[case::u32(Dtype::Uint32)]
fn arrays_keep_their_values_and_dtype(#[case] dtype: Dtype) {
    // Small integers are exact in every one of these dtypes.
    let values = [0.0f32, 1.0, 2.0, 3.0, 5.0, 8.0];
    let array = match dtype {
        Dtype::Float32 => Array::from_slice(&values, &[2, 3]),
        Dtype::Float16 => Array::from_slice(&values.map(f16::from_f32), &[2, 3]),
        Dtype::Bfloat16 => Array::from_slice(&values.map(bf16::from_f32), &[2, 3]),
        Dtype::Int32 => Array::from_slice(&values.map(|v| v as i32), &[2, 3]),
        Dtype::Uint32 => Array::from_slice(&values.map(|v| v as u32), &[2, 3]),
        _ => unreachable!("not a case"),
    };
    assert_eq!(array.dtype(), dtype);
    assert_eq!(array.shape(), &[2, 3]);
    match dtype {
        Dtype::Float16 => assert_eq!(array.as_slice::<f16>(), values.map(f16::from_f32)),
        Dtype::Bfloat16 => assert_eq!(array.as_slice::<bf16>(), values.map(bf16::from_f32)),
        Dtype::Int32 => assert_eq!(array.as_slice::<i32>(), values.map(|v| v as i32)),
        Dtype::Uint32 => assert_eq!(array.as_slice::<u32>(), values.map(|v| v as u32)),
        _ => assert_eq!(array.as_slice::<f32>(), values),
    }
    let last = array.flatten(None, None).unwrap().index(5);
    match dtype {
        Dtype::Float16 => assert_eq!(last.item_exact::<f16>(), f16::from_f32(8.0)),
        Dtype::Bfloat16 => assert_eq!(last.item_exact::<bf16>(), bf16::from_f32(8.0)),
        _ => assert_eq!(
            last.as_dtype(Dtype::Float32).unwrap().item_exact::<f32>(),
            8.0
        ),
    }
}

fn matmul_reference(a: &[f32], b: &[f32], m: usize, k: usize, n: usize) -> Vec<f64> {
    let mut out = vec![0.0; m * n];
    for i in 0..m {
        for j in 0..n {
            out[i * n + j] = (0..k)
                .map(|p| f64::from(a[i * k + p]) * f64::from(b[p * n + j]))
                .sum();
        }
    }
    out
}

#[rstest]
#[case::small(3, 4, 5)]
#[case::row_vector(1, 64, 7)]
#[case::odd_sizes(16, 33, 8)]
fn matmul_matches_f64_reference(#[case] m: usize, #[case] k: usize, #[case] n: usize) {
    let a = random_values(m * k, 1);
    let b = random_values(k * n, 2);
    let product = Array::from_slice(&a, &[m as i32, k as i32])
        .matmul(Array::from_slice(&b, &[k as i32, n as i32]))
        .unwrap();
    assert_close(
        "matmul",
        &to_f32(&product),
        &matmul_reference(&a, &b, m, k, n),
        1e-5,
        1e-6,
    );
}

/// RoPE from its definition, on x: [B, H, L, D]. Position p = offset + l rotates feature pair j
/// by p * base^(-2j/D); pairs are (2j, 2j+1) when traditional, (j, j + D/2) otherwise.
fn rope_reference(
    x: &[f32],
    shape: [usize; 4],
    traditional: bool,
    base: f64,
    offset: usize,
) -> Vec<f64> {
    let [_, _, length, dims] = shape;
    let half = dims / 2;
    let mut out: Vec<f64> = x.iter().map(|&v| f64::from(v)).collect();
    for (row_index, row) in out.chunks_mut(dims).enumerate() {
        let position = (offset + row_index % length) as f64;
        for j in 0..half {
            let angle = position * base.powf(-2.0 * j as f64 / dims as f64);
            let (a, b) = if traditional {
                (2 * j, 2 * j + 1)
            } else {
                (j, j + half)
            };
            let (x1, x2) = (row[a], row[b]);
            row[a] = x1 * angle.cos() - x2 * angle.sin();
            row[b] = x1 * angle.sin() + x2 * angle.cos();
        }
    }
    out
}

#[rstest]
#[case::rotate_half(false, 0)]
#[case::rotate_half_with_offset(false, 7)]
#[case::traditional(true, 0)]
#[case::traditional_with_offset(true, 7)]
fn fast_rope_matches_definition(#[case] traditional: bool, #[case] offset: i32) {
    let shape = [2, 3, 5, 16];
    let x = random_values(shape.iter().product(), 3);
    let input = Array::from_slice(&x, &shape.map(|d| d as i32));
    let rotated = fast::rope(&input, 16, traditional, 10000.0, 1.0, offset, None).unwrap();
    let expected = rope_reference(&x, shape, traditional, 10000.0, offset as usize);
    assert_close("fast::rope", &to_f32(&rotated), &expected, 1e-5, 1e-5);
}

/// softmax(q k^T * scale + causal mask) v, per head; key/value heads shared by groups of queries.
/// The shape of one attention problem: query heads, key/value heads, sequence length, head depth.
#[derive(Clone, Copy)]
struct AttentionShape {
    heads: usize,
    kv_heads: usize,
    length: usize,
    dims: usize,
}

fn causal_attention_reference(
    q: &[f32],
    k: &[f32],
    v: &[f32],
    shape: &AttentionShape,
    scale: f64,
) -> Vec<f64> {
    let AttentionShape {
        heads,
        kv_heads,
        length,
        dims,
    } = *shape;

    let mut out = vec![0.0; heads * length * dims];
    for h in 0..heads {
        let kv = h / (heads / kv_heads);
        for i in 0..length {
            let scores: Vec<f64> = (0..=i)
                .map(|j| {
                    (0..dims)
                        .map(|d| {
                            f64::from(q[(h * length + i) * dims + d])
                                * f64::from(k[(kv * length + j) * dims + d])
                        })
                        .sum::<f64>()
                        * scale
                })
                .collect();
            let max = scores.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            let weights: Vec<f64> = scores.iter().map(|s| (s - max).exp()).collect();
            let total: f64 = weights.iter().sum();
            for d in 0..dims {
                out[(h * length + i) * dims + d] = (0..=i)
                    .map(|j| weights[j] / total * f64::from(v[(kv * length + j) * dims + d]))
                    .sum();
            }
        }
    }
    out
}

#[rstest]
#[case::multi_head(4, 4)]
#[case::grouped_query(4, 2)]
fn fast_causal_attention_matches_definition(#[case] heads: usize, #[case] kv_heads: usize) {
    let (length, dims) = (6, 16);
    let q = random_values(heads * length * dims, 4);
    let k = random_values(kv_heads * length * dims, 5);
    let v = random_values(kv_heads * length * dims, 6);
    let scale = 1.0 / (dims as f32).sqrt();
    let array = |data: &[f32], h: usize| {
        Array::from_slice(data, &[1, h as i32, length as i32, dims as i32])
    };
    let out = fast::scaled_dot_product_attention(
        array(&q, heads),
        array(&k, kv_heads),
        array(&v, kv_heads),
        scale,
        fast::ScaledDotProductAttentionMask::Causal,
        None,
    )
    .unwrap();
    let expected = causal_attention_reference(
        &q,
        &k,
        &v,
        &AttentionShape {
            heads,
            kv_heads,
            length,
            dims,
        },
        f64::from(scale),
    );
    assert_close(
        "fast::scaled_dot_product_attention",
        &to_f32(&out),
        &expected,
        1e-5,
        1e-6,
    );
}

#[test]
fn fast_rms_norm_matches_definition() {
    let (rows, dims, eps) = (4, 24, 1e-5);
    let x = random_values(rows * dims, 7);
    let weight = random_values(dims, 8);
    let out = fast::rms_norm(
        Array::from_slice(&x, &[rows as i32, dims as i32]),
        Some(&Array::from_slice(&weight, &[dims as i32])),
        eps,
    )
    .unwrap();
    let expected: Vec<f64> = x
        .chunks(dims)
        .flat_map(|row| {
            let mean_square = row.iter().map(|&v| f64::from(v).powi(2)).sum::<f64>() / dims as f64;
            let inverse_rms = 1.0 / (mean_square + f64::from(eps)).sqrt();
            row.iter()
                .zip(&weight)
                .map(move |(&v, &w)| f64::from(v) * inverse_rms * f64::from(w))
                .collect::<Vec<_>>()
        })
        .collect();
    assert_close("fast::rms_norm", &to_f32(&out), &expected, 1e-5, 1e-6);
}

/// Unpacks MLX's affine quantization by hand: `bits`-wide values, little end of each u32 first,
/// `w = scale * q + bias` per group of `group_size` along the rows.
fn dequantize_by_hand(
    packed: &[u32],
    scales: &[f32],
    biases: &[f32],
    columns: usize,
    group_size: usize,
    bits: usize,
) -> Vec<f64> {
    let per_word = 32 / bits;
    let mask = (1u32 << bits) - 1;
    let words_per_row = columns / per_word;
    let rows = packed.len() / words_per_row;
    let mut out = Vec::with_capacity(rows * columns);
    for row in 0..rows {
        for column in 0..columns {
            let word = packed[row * words_per_row + column / per_word];
            let q = (word >> (bits * (column % per_word))) & mask;
            let group = row * (columns / group_size) + column / group_size;
            out.push(f64::from(scales[group]) * f64::from(q) + f64::from(biases[group]));
        }
    }
    out
}

#[rstest]
#[case::int4_group32(4, 32)]
#[case::int4_group64(4, 64)]
#[case::int8_group32(8, 32)]
#[case::int8_group64(8, 64)]
fn quantized_matmul_matches_hand_dequantized_weights(#[case] bits: i32, #[case] group_size: i32) {
    let (rows, columns, tokens) = (16usize, 128usize, 3usize);
    let w = random_values(rows * columns, 9);
    let x = random_values(tokens * columns, 10);
    let (packed, scales, biases) = ops::quantize(
        Array::from_slice(&w, &[rows as i32, columns as i32]),
        group_size,
        bits,
    )
    .unwrap();
    packed.eval().unwrap();
    let dequantized = dequantize_by_hand(
        packed.as_slice::<u32>(),
        &to_f32(&scales),
        &to_f32(&biases),
        columns,
        group_size as usize,
        bits as usize,
    );

    // Quantization error stays within one step per element: MLX anchors each group at its
    // larger-magnitude end (so the step may be negative) and rescales it so that 0 is exactly
    // representable, which can stretch rounding error slightly past half a step.
    let steps = to_f32(&scales);
    for (index, (&original, &restored)) in w.iter().zip(&dequantized).enumerate() {
        let step = f64::from(steps[index / group_size as usize]).abs();
        assert!(
            (f64::from(original) - restored).abs() <= step + 1e-6,
            "element {index}: {original} became {restored}"
        );
    }
    let mlx_dequantized = ops::dequantize(&packed, &scales, &biases, group_size, bits).unwrap();
    assert_close(
        "ops::dequantize",
        &to_f32(&mlx_dequantized),
        &dequantized,
        0.0,
        1e-7,
    );

    let out = ops::quantized_matmul(
        Array::from_slice(&x, &[tokens as i32, columns as i32]),
        &packed,
        &scales,
        &biases,
        true,
        group_size,
        bits,
    )
    .unwrap();
    let w_transposed: Vec<f32> = (0..columns)
        .flat_map(|c| (0..rows).map(move |r| (r, c)))
        .map(|(r, c)| dequantized[r * columns + c] as f32)
        .collect();
    let expected = matmul_reference(&x, &w_transposed, tokens, columns, rows);
    assert_close(
        "ops::quantized_matmul",
        &to_f32(&out),
        &expected,
        1e-5,
        1e-5,
    );
}

#[test]
fn safetensors_round_trip_keeps_values_and_dtypes() {
    let folder = tempfile::tempdir().unwrap();
    let path = folder.path().join("round_trip.safetensors");
    let floats = random_values(12, 11);
    let arrays = HashMap::from([
        (
            "weights.f32".to_string(),
            Array::from_slice(&floats, &[3, 4]),
        ),
        (
            "weights.f16".to_string(),
            Array::from_slice(
                &floats.iter().map(|&v| f16::from_f32(v)).collect::<Vec<_>>(),
                &[12],
            ),
        ),
        (
            "tokens.i32".to_string(),
            Array::from_slice(&[1i32, -2, 3], &[3]),
        ),
    ]);
    Array::save_safetensors(&arrays, None, &path).unwrap();
    let loaded = Array::load_safetensors(&path).unwrap();
    assert_eq!(loaded.len(), 3);
    for (name, original) in &arrays {
        let restored = &loaded[name];
        assert_eq!(restored.dtype(), original.dtype(), "{name}");
        assert_eq!(restored.shape(), original.shape(), "{name}");
        assert!(
            restored.eq_values(original).unwrap(),
            "{name} changed in the round trip"
        );
    }
}

/// On Linux the bridge replaces the wheels' reference BLAS with OpenBLAS from PyPI; a build that
/// silently kept the reference BLAS would be about 30 times slower at every f32 GEMM.
#[test]
#[cfg(target_os = "linux")]
fn f32_gemm_runs_on_openblas_from_pypi() {
    let blas = mlx_doctor::blas_in_use();
    assert!(
        blas.contains("scipy-openblas32"),
        "MLX's BLAS is not the bridge's OpenBLAS: {blas}"
    );
}

/// MLX's inverse calls the bundled LAPACK (sgetrf_, sgetri_), which calls the BLAS through the
/// bridge's stand-in: every function LAPACK needs must be forwarded, with its arguments intact.
#[test]
fn lapack_inverse_through_the_bridges_blas_inverts() {
    let n = 200;
    // Diagonally dominant, so well conditioned: [n, n]
    let noise = Array::from_slice(&random_values(n * n, 11), &[n as i32, n as i32]);
    let a = &noise + Array::eye::<f32>(n as i32, None, None).unwrap() * n as f32;
    // MLX runs linalg on the CPU only.
    let inverse = mlx_rs::with_device(mlx_rs::Device::cpu(), || mlx_rs::linalg::inv(&a)).unwrap();
    let product = to_f32(&a.matmul(&inverse).unwrap());
    let identity: Vec<f64> = (0..n * n)
        .map(|i| f64::from(u8::from(i / n == i % n)))
        .collect();
    assert_close("a @ inv(a)", &product, &identity, 0.0, 1e-4);
}

#[test]
fn seeded_random_numbers_repeat_and_differ_by_seed() {
    let draw = |seed| {
        to_f32(&random::normal::<f32>(&[64][..], None, None, &random::key(seed).unwrap()).unwrap())
    };
    assert_eq!(draw(7), draw(7));
    assert_ne!(draw(7), draw(8));
}

#[test]
fn mlx_errors_come_back_as_rust_errors() {
    let a = Array::from_slice(&[1.0f32; 6], &[2, 3]);
    let error = a
        .matmul(&a)
        .expect_err("a [2, 3] @ [2, 3] matmul must fail");
    assert!(
        error.to_string().contains("matmul"),
        "unexpected message: {error}"
    );
}
